"""The timm model families of the search spaces (registered with ``timm.register_model``)."""

from nas.models import (
    nb201,  # noqa: F401
)

