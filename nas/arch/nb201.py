"""NAS-Bench-201 cells: the op on each of the cell's six edges.

Canonical string: ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` where ``op~i`` is the op on the edge
from node ``i`` into the node of that group (nodes 1, 2 and 3 in turn).

Example:
    >>> from nas.arch.nb201 import ARCH_RESNET, NB201Arch
    >>> cell = NB201Arch.decode("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|")
    >>> cell == ARCH_RESNET and NB201Arch.decode(cell.encode()) == cell
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: Cell edges (to_node, from_node) in canonical string order.
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))

_NODE_GROUP = re.compile(r"^\|(.*)\|$")


def format_cell(ops: tuple[str, ...]) -> str:
    """The canonical string of six edge ops (the inverse of :func:`parse_cell`)."""
    groups, k = [], 0
    for node in (1, 2, 3):
        groups.append("|" + "|".join(f"{ops[k + i]}~{i}" for i in range(node)) + "|")
        k += node
    return "+".join(groups)


def parse_cell(text: str) -> tuple[str, ...]:
    """Parse ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` into six ops; ``ValueError`` on any bad token."""
    if not isinstance(text, str):
        raise TypeError(f"a cell string must be str, got {type(text).__name__}")
    groups = text.strip().split("+")
    if len(groups) != 3:
        raise ValueError(
            f"malformed cell {text!r}: expected 3 node groups joined by '+' "
            "like |op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
        )
    ops: list[str] = []
    for node, group in enumerate(groups, start=1):
        m = _NODE_GROUP.match(group)
        if not m:
            raise ValueError(f"malformed node group {group!r} in {text!r}: expected |op~i|...|")
        tokens = m.group(1).split("|")
        if len(tokens) != node:
            raise ValueError(
                f"node group {group!r} has {len(tokens)} edges; node {node} takes {node} inputs"
            )
        for i, token in enumerate(tokens):
            op, sep, src = token.partition("~")
            if not sep or src != str(i):
                raise ValueError(f"bad edge token {token!r} in {text!r}: expected '<op>~{i}'")
            if op not in OPS:
                raise ValueError(f"unknown op {op!r} in token {token!r}; allowed: {', '.join(OPS)}")
            ops.append(op)
    return tuple(ops)


@dataclass(frozen=True)
class NB201Arch:
    """One NAS-Bench-201 cell: the op on each edge, in canonical order (:data:`EDGES`)."""

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.ops, tuple):
            raise TypeError(f"ops must be a tuple of op names, got {type(self.ops).__name__}")
        if len(self.ops) != len(EDGES):
            raise ValueError(f"a NAS-Bench-201 cell has {len(EDGES)} edges, got {len(self.ops)} ops")
        for op in self.ops:
            if op not in OPS:
                raise ValueError(f"unknown op {op!r}; allowed: {', '.join(OPS)}")

    def encode(self) -> str:
        """The canonical string (see the module docstring)."""
        return format_cell(self.ops)

    @classmethod
    def decode(cls, text: str) -> NB201Arch:
        """Parse the canonical string; ``ValueError`` naming the bad token."""
        return cls(parse_cell(text))

    def __str__(self) -> str:
        return self.encode()


#: The benchmark's ResNet-like cell (two 3x3 convs in series beside a skip): 559,386 parameters.
ARCH_RESNET = NB201Arch(
    ("nor_conv_3x3", "none", "nor_conv_3x3", "skip_connect", "none", "skip_connect")
)
