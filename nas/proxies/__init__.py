"""Registry of training-free proxies.

Example:
    >>> import nas, torch
    >>> model = nas.spaces.get("nb201").build(
    ...     nas.spaces.get("nb201").decode(
    ...         "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"))
    >>> x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    >>> result = nas.proxies.score("wrcor", model, x, y)
    >>> isinstance(result.score, float)
    True
"""

from nas.proxies import aznas, baselines, cost, many, vkdnw, vote, wrcor  # noqa: E402,F401  (register the built-in proxies)
from nas.proxies.base import (
    ProxyResult,
    ProxySpec,
    available,
    get,
    register,
    score,
    validate_batch,
    validate_options,
)
from nas.proxies.many import failed, score_many
from nas.proxies.vote import Vote, available_votes, get_vote, rank_average, register_vote

__all__ = [
    "ProxyResult", "ProxySpec", "Vote", "available", "available_votes", "failed", "get", "get_vote",
    "rank_average", "register", "register_vote", "score", "score_many", "validate_batch", "validate_options",
]
