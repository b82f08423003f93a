"""Registry of training-free proxies: single measures and the aggregates that rank populations.

Example:
    >>> import nas, torch
    >>> model = nas.spaces.get("nb201").build(
    ...     nas.spaces.get("nb201").decode(
    ...         "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"))
    >>> x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    >>> result = nas.proxies.score("wrcor", model, x, y)
    >>> isinstance(result.score, float)
    True
    >>> "sjw" in nas.proxies.available("aggregate")
    True
"""

# single proxies first (the aggregate module imports them), then the aggregates over them
from nas.proxies import aggregate, aznas, baselines, cost, layers, meco, swap, tenas, vkdnw, wrcor  # noqa: F401  (register them)
from nas.proxies.aggregate import Aggregate, rank_average, register_aggregate
from nas.proxies.base import (
    FAMILIES,
    REGISTRY,
    Family,
    ProxyResult,
    ProxySpec,
    available,
    family_of,
    get,
    get_single,
    register,
    register_family,
    score,
    validate_batch,
    validate_options,
)
from nas.proxies.multi import expand, failed, failure, score_many

__all__ = [
    "FAMILIES", "REGISTRY", "Aggregate", "Family", "ProxyResult", "ProxySpec", "available", "expand", "failed",
    "failure", "family_of", "get", "get_single", "rank_average", "register", "register_aggregate",
    "register_family", "score", "score_many", "validate_batch", "validate_options",
]  # fmt: skip
