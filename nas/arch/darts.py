"""The DARTS cell genotype (the NAS-Bench-301 space): a frozen value and its three string forms.

A genotype is a normal and a reduction cell. Each cell has 4 intermediate nodes; node ``k``
(``k = 0..3``, DARTS's state ``k + 2``) sums two edges ``(input, op)`` whose inputs are distinct
states in ``0..k+1``: 0 and 1 are the outputs of the two previous cells, ``j >= 2`` is
intermediate node ``j - 2``. The cell's output concatenates the four intermediate nodes (DARTS's
``concat=[2, 3, 4, 5]``, the only concatenation NAS-Bench-301 holds). Ops, in the order of
NASLib's compact op indices (``naslib/search_spaces/nasbench301/conversions.py``): 0
``max_pool_3x3``, 1 ``avg_pool_3x3``, 2 ``skip_connect``, 3 ``sep_conv_3x3``, 4
``sep_conv_5x5``, 5 ``dil_conv_3x3``, 6 ``dil_conv_5x5``.

**Canonical form.** A node's two edges are summed, so they are an unordered pair: a genotype
stores each node's edges sorted by input (inputs are distinct, so this order is total). Two
genotypes that differ only in the order of a node's edges are equal, hash equal and encode
equal; NAS-Bench-301's own configuration space (``inputs_node_<cell>_<k>`` = the sorted pair)
identifies them too. Two edges of one node from the same input are refused: DARTS derives a
node's two edges from distinct inputs (the top-2 over inputs in ``model_search.py``'s
``_parse``) and NAS-Bench-301 and NASLib's sampler draw them without replacement.

String forms (all three decode with :func:`parse`):

- canonical (:meth:`DartsGenotype.encode`), one ``|op~input|op~input|`` group per node joined by
  ``+``, the cells named::

      normal:|sep_conv_3x3~0|sep_conv_3x3~1|+|...|+|...|+|...|;reduce:|max_pool_3x3~0|...|

- DARTS's ``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5],
  reduce=[...], reduce_concat=[2, 3, 4, 5])`` (:meth:`DartsGenotype.to_genotype_str`), parsed
  from its syntax tree, never evaluated; ``range(2, 6)`` is accepted for a concat;
- NASLib's compact form ``[normal, reduce]``, each 8 pairs ``[input, op_index]`` (pairs ``2k``
  and ``2k + 1`` feed node ``k``), as JSON lists or Python tuples
  (:meth:`DartsGenotype.to_compact_str`).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from numbers import Integral
from typing import Any

#: The seven ops, in NASLib's compact-index order.
OPS = (
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
NUM_NODES = 4
#: What every cell concatenates: DARTS's states 2..5, the four intermediate nodes.
CONCAT = (2, 3, 4, 5)
CELLS = ("normal", "reduce")

Edge = tuple[int, str]
Node = tuple[Edge, Edge]
Cell = tuple[Node, Node, Node, Node]

_GROUP = re.compile(r"^\|([^|]+)\|([^|]+)\|$")


def _has_items(value: Any, n: int) -> bool:
    """Whether ``value`` is a sequence of ``n`` items (a string is not: it is a form to parse)."""
    return isinstance(value, Sequence) and not isinstance(value, str) and len(value) == n


def _size(value: Any) -> Any:
    """What an error names for a ``value`` of the wrong size: its length, or itself if no sequence."""
    return len(value) if isinstance(value, Sequence) and not isinstance(value, str) else value


def _require_items(value: Any, n: int, rule: str, show_value: bool = False) -> None:
    """``ValueError`` "<rule>, got <size or value>" unless ``value`` is a sequence of ``n`` items."""
    if not _has_items(value, n):
        raise ValueError(f"{rule}, got {value if show_value else _size(value)!r}")


def _cells_of_pairs(
    cells: Sequence[Any], form: str, container: str, pair_form: str, edge: Callable[[str, int, Any], Any]
) -> list[list[list[Any]]]:
    """Both cells' node lists from two lists of ``2 * NUM_NODES`` pairs in DARTS's edge order
    (pairs ``2k``, ``2k + 1`` feed node ``k``); ``edge(cell name, index, pair)`` reads one pair."""
    out = []
    for name, pairs in zip(CELLS, cells, strict=True):
        where = f"{form} {name} {container}"
        _require_items(pairs, 2 * NUM_NODES, f"{where} has {2 * NUM_NODES} pairs {pair_form}")
        edges = []
        for i, pair in enumerate(pairs):
            _require_items(pair, 2, f"{where} pair {i}: expected {pair_form}", show_value=True)
            edges.append(edge(name, i, pair))
        out.append([edges[2 * k : 2 * k + 2] for k in range(NUM_NODES)])
    return out


def _edge(value: Any, where: str, k: int) -> Edge:
    if not _has_items(value, 2):
        raise ValueError(f"{where}: an edge is a pair (input, op), got {value!r}")
    src, op = value
    # NASLib's sampler produces numpy integers: any integral number is an input.
    if isinstance(src, bool) or not isinstance(src, Integral):
        raise ValueError(f"{where}: the edge input must be an int, got {src!r}")
    src = int(src)
    if not 0 <= src <= k + 1:
        raise ValueError(
            f"{where}: input {src} out of range; node {k} takes inputs 0..{k + 1} "
            "(0, 1: the previous cells; j >= 2: intermediate node j - 2)"
        )
    if op not in OPS:
        raise ValueError(f"{where}: unknown op {op!r}; allowed: {', '.join(OPS)}")
    return src, op


def _cell(value: Any, name: str) -> Cell:
    _require_items(value, NUM_NODES, f"the {name} cell has {NUM_NODES} nodes of two edges each")
    nodes = []
    for k, node in enumerate(value):
        _require_items(node, 2, f"{name} cell node {k} takes exactly 2 edges", show_value=True)
        a, b = (_edge(e, f"{name} cell node {k}", k) for e in node)
        if a[0] == b[0]:
            raise ValueError(
                f"{name} cell node {k}: both edges come from input {a[0]}; a node's two inputs "
                "must be distinct (as DARTS derives them and NAS-Bench-301 holds them)"
            )
        nodes.append((a, b) if a[0] < b[0] else (b, a))
    return tuple(nodes)  # type: ignore[return-value]


@dataclass(frozen=True)
class DartsGenotype:
    """A DARTS genotype: per cell, 4 nodes of two ``(input, op)`` edges (see the module doc).

    Args:
        normal: the normal cell, 4 nodes of 2 edges; each node's edges are stored sorted by input.
        reduce: the reduction cell, same shape.

    Raises:
        ValueError: a wrong number of nodes or edges, an input out of range, an unknown op, or
            two edges of one node from the same input.
    """

    normal: Cell
    reduce: Cell

    def __post_init__(self) -> None:
        object.__setattr__(self, "normal", _cell(self.normal, "normal"))
        object.__setattr__(self, "reduce", _cell(self.reduce, "reduce"))

    def cell(self, reduction: bool) -> Cell:
        """The reduction cell if ``reduction`` else the normal cell."""
        return self.reduce if reduction else self.normal

    # canonical string
    def encode(self) -> str:
        """The canonical string; ``DartsGenotype.decode(g.encode()) == g``."""
        return ";".join(
            f"{name}:"
            + "+".join(f"|{a[1]}~{a[0]}|{b[1]}~{b[0]}|" for a, b in self.cell(name == "reduce"))
            for name in CELLS
        )

    @classmethod
    def decode(cls, text: str) -> DartsGenotype:
        """Parse any of the three string forms (canonical, DARTS ``Genotype(...)``, compact)."""
        return parse(text)

    def __str__(self) -> str:
        return self.encode()

    # DARTS's form
    def to_darts(self) -> dict[str, Any]:
        """DARTS's ``Genotype`` fields: ``normal``/``reduce`` as 8 ``(op, input)`` pairs, the concats."""
        out: dict[str, Any] = {}
        for name in CELLS:
            out[name] = [(op, src) for node in self.cell(name == "reduce") for src, op in node]
            out[f"{name}_concat"] = list(CONCAT)
        return out

    def to_genotype_str(self) -> str:
        """DARTS's ``Genotype(normal=[...], normal_concat=[2, 3, 4, 5], reduce=[...], ...)`` string."""
        d = self.to_darts()
        fields = ", ".join(
            f"{k}={d[k]!r}" for k in ("normal", "normal_concat", "reduce", "reduce_concat")
        )
        return f"Genotype({fields})"

    # NASLib's form
    def to_compact(self) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
        """NASLib's compact tuple ``(normal, reduce)``, each 8 ``(input, op_index)`` pairs."""
        normal, reduce = (
            tuple((src, OPS.index(op)) for node in self.cell(r) for src, op in node)
            for r in (False, True)
        )
        return normal, reduce

    def to_compact_str(self) -> str:
        """The compact form as JSON, ``[[[input, op_index], ...], [...]]``."""
        return json.dumps([[list(p) for p in cell] for cell in self.to_compact()])

    @classmethod
    def from_compact(cls, compact: Any) -> DartsGenotype:
        """From NASLib's compact form: a sequence ``[normal, reduce]`` or its JSON/Python string."""
        if isinstance(compact, str):
            compact = _literal(compact, "compact genotype")
        if not _has_items(compact, 2):
            raise ValueError(f"a compact genotype is [normal, reduce], got {compact!r}")

        def edge(name: str, i: int, pair: Sequence[Any]) -> Edge:
            src, index = pair
            if isinstance(index, bool) or not isinstance(index, Integral) or not 0 <= index < len(OPS):
                raise ValueError(
                    f"compact {name} cell pair {i}: op index {index!r} is not in 0..{len(OPS) - 1} "
                    f"({', '.join(f'{j} {op}' for j, op in enumerate(OPS))})"
                )
            return src, OPS[int(index)]

        return cls(*_cells_of_pairs(compact, "the compact", "cell", "[input, op_index]", edge))

    @classmethod
    def from_darts(cls, normal: Sequence[Any], reduce: Sequence[Any]) -> DartsGenotype:
        """From DARTS's two lists of 8 ``(op, input)`` pairs (pairs ``2k``, ``2k + 1`` feed node ``k``)."""
        pairs = (normal, reduce)
        return cls(*_cells_of_pairs(pairs, "DARTS's", "list", "(op, input)", lambda _n, _i, p: (p[1], p[0])))


def _literal(text: str, what: str) -> Any:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as err:
        raise ValueError(f"malformed {what} {text!r}: {err}") from None


def parse_canonical(text: str) -> DartsGenotype:
    """Parse the canonical ``normal:|op~i|op~j|+...;reduce:...`` string."""
    parts = text.strip().split(";")
    if len(parts) != 2:
        raise ValueError(
            f"malformed genotype {text!r}: expected 'normal:...;reduce:...' (two cells joined by ';')"
        )
    cells = []
    for name, part in zip(CELLS, parts, strict=True):
        label, sep, body = part.partition(":")
        if not sep or label != name:
            raise ValueError(
                f"malformed genotype {text!r}: expected the {name!r} cell as '{name}:...', got {part!r}"
            )
        groups = body.split("+")
        if len(groups) != NUM_NODES:
            raise ValueError(
                f"the {name} cell {body!r} has {len(groups)} node groups; expected {NUM_NODES} joined by '+'"
            )
        nodes = []
        for k, group in enumerate(groups):
            m = _GROUP.match(group)
            if not m:
                raise ValueError(
                    f"malformed node group {k} {group!r} in the {name} cell: expected |op~input|op~input|"
                )
            edges = []
            for token in m.groups():
                op, tilde, src = token.partition("~")
                if not tilde or not src.isdigit() or (len(src) > 1 and src[0] == "0"):
                    raise ValueError(
                        f"bad edge token {token!r} in {group!r}: expected '<op>~<input>'"
                    )
                edges.append((int(src), op))
            nodes.append(edges)
        cells.append(nodes)
    return DartsGenotype(*cells)


def _literal_node(node: ast.expr, field: str) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise ValueError(
            f"Genotype field {field} must be a literal, got {ast.unparse(node)!r}"
        ) from None


def _concat(node: ast.expr, field: str) -> list[int]:
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "range"
        and not node.keywords
    ):
        bounds = [_literal_node(a, field) for a in node.args]
        if not 1 <= len(bounds) <= 3 or not all(isinstance(b, int) for b in bounds):
            raise ValueError(f"{field}: range() takes 1 to 3 ints, got {ast.unparse(node)!r}")
        return list(range(*bounds))
    value = _literal_node(node, field)
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{field} must be a list of states, got {value!r}")
    return list(value)


def parse_genotype_str(text: str) -> DartsGenotype:
    """Parse DARTS's ``Genotype(normal=[...], normal_concat=[...], reduce=[...], reduce_concat=[...])``.

    The text is parsed into a syntax tree and only literals (and ``range``) are read from it.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as err:
        raise ValueError(f"malformed DARTS genotype {text!r}: {err.msg}") from None
    func = tree.func if isinstance(tree, ast.Call) else None
    name = (
        func.id
        if isinstance(func, ast.Name)
        else func.attr
        if isinstance(func, ast.Attribute)
        else None
    )
    if name != "Genotype":
        raise ValueError(f"a DARTS genotype string is Genotype(normal=..., ...), got {text!r}")
    assert isinstance(tree, ast.Call)
    fields = ("normal", "normal_concat", "reduce", "reduce_concat")
    if len(tree.args) > len(fields):
        raise ValueError(
            f"Genotype takes {len(fields)} fields ({', '.join(fields)}), got {len(tree.args)} positional"
        )
    given: dict[str, ast.expr] = dict(zip(fields, tree.args, strict=False))
    for kw in tree.keywords:
        if kw.arg not in fields or kw.arg in given:
            raise ValueError(
                f"Genotype field {kw.arg!r} is unknown or repeated; fields: {', '.join(fields)}"
            )
        given[kw.arg] = kw.value
    missing = [f for f in fields if f not in given]
    if missing:
        raise ValueError(f"DARTS genotype {text!r} misses field(s) {missing}")
    for field in ("normal_concat", "reduce_concat"):
        concat = _concat(given[field], field)
        if concat != list(CONCAT):
            raise ValueError(
                f"{field}={concat}: this space's cells concatenate all four intermediate nodes, "
                f"{list(CONCAT)} (as NAS-Bench-301's)"
            )
    pairs = {f: _literal_node(given[f], f) for f in ("normal", "reduce")}
    return DartsGenotype.from_darts(pairs["normal"], pairs["reduce"])


def parse(text: str) -> DartsGenotype:
    """Parse any string form: canonical, DARTS's ``Genotype(...)`` or NASLib's compact list."""
    if not isinstance(text, str):
        raise TypeError(f"a genotype string must be str, got {type(text).__name__}")
    head = text.lstrip()
    if head.startswith(("[", "(")):
        return DartsGenotype.from_compact(head)
    if "Genotype(" in head.split("[", 1)[0]:
        return parse_genotype_str(head)
    return parse_canonical(text)


def input_pairs(node: int) -> tuple[tuple[int, int], ...]:
    """The unordered input pairs of intermediate node ``node``, in lexicographic order."""
    return tuple(combinations(range(node + 2), 2))


#: DARTS V2 (second-order DARTS, ``cnn/genotypes.py`` of quark0/darts): the published 3.3M network.
DARTS_V2 = parse_genotype_str(
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
    "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
    "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
    "reduce_concat=[2, 3, 4, 5])"
)
#: DARTS V1 (first-order DARTS), same source.
DARTS_V1 = parse_genotype_str(
    "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), "
    "('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], "
    "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
    "('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], "
    "reduce_concat=[2, 3, 4, 5])"
)
