"""The timm model families of the search spaces (registered with ``timm.register_model``)."""

from nas.models import (
    darts,  # noqa: F401
    mbv2,  # noqa: F401
    nb101,  # noqa: F401
    nb201,  # noqa: F401
)

