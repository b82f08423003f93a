"""NAS-Bench-101 cells as frozen values: validation, pruning, the benchmark's hash, a string form.

A cell is a V x V upper-triangular 0/1 adjacency matrix (row = from, column = to; V <= 7) and
V op labels: ``input``, then one of :data:`OPS` per interior vertex, then ``output``. The value
keeps the spec as given, like the benchmark's ``ModelSpec.original_matrix``; :meth:`NB101Arch.pruned`
removes the vertices that lie on no input-to-output path, exactly as ``ModelSpec`` does, and
:meth:`NB101Arch.module_hash` is the benchmark's isomorphism-invariant hash of the pruned cell
(``graph_util.hash_module``), the key of the official dataset.

A spec is valid when the input reaches the output and the pruned cell has at most
:data:`MAX_EDGES` edges (the benchmark's ``NASBench.is_valid``: the edge limit applies after
pruning, so a 7-vertex matrix with dead edges may hold more than nine ones).

String form (canonical; ``decode(encode(a)) == a``)::

    <row 0>/<row 1>/.../<row V-1>;<op 0>,<op 1>,...,<op V-1>

each row written as V digits 0/1, ops as the benchmark's labels. The README's Inception-like cell:
``0111010/0000001/0000001/0000100/0000001/0000001/0000000;input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

INPUT = "input"
OUTPUT = "output"
#: Interior op labels in the benchmark's canonical order (``config['available_ops']``); the
#: index of an op in this tuple is its label in the hash.
OPS: tuple[str, ...] = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
NUM_VERTICES = 7
MAX_EDGES = 9

Matrix = tuple[tuple[int, ...], ...]


def _as_matrix(matrix: Any) -> Matrix:
    """``matrix`` (nested sequence or array) as a tuple of tuples of ints; ``ValueError`` if not 0/1 square."""
    if isinstance(matrix, str) or not isinstance(matrix, Sequence | np.ndarray):
        raise TypeError(f"an adjacency matrix must be a nested sequence of 0/1, got {type(matrix).__name__}")
    rows = []
    for i, row in enumerate(matrix):
        if isinstance(row, str) or not isinstance(row, Sequence | np.ndarray):
            raise TypeError(f"row {i} of the adjacency matrix must be a sequence of 0/1, got {row!r}")
        cells = []
        for j, v in enumerate(row):
            if isinstance(v, bool | np.bool_):
                v = int(v)
            if not isinstance(v, int | np.integer) or int(v) not in (0, 1):
                raise ValueError(f"adjacency matrix entry [{i}][{j}] is {v!r}; entries must be 0 or 1")
            cells.append(int(v))
        rows.append(tuple(cells))
    n = len(rows)
    if not 2 <= n <= NUM_VERTICES or any(len(r) != n for r in rows):
        shape = f"{n} x {'/'.join(sorted({str(len(r)) for r in rows})) or 0}"
        raise ValueError(
            f"adjacency matrix is {shape}; a NAS-Bench-101 cell is a square V x V matrix with "
            f"2 <= V <= {NUM_VERTICES} ({NUM_VERTICES} x {NUM_VERTICES} before pruning)"
        )
    return tuple(rows)


def prune(matrix: Matrix, ops: tuple[str, ...]) -> tuple[Matrix, tuple[str, ...]] | None:
    """The cell without the vertices that lie on no input-to-output path; ``None`` if the input
    does not reach the output (``ModelSpec._prune``: kept vertices are those reachable from the
    input and reaching the output, in their original order)."""
    n = len(matrix)
    from_input, frontier = {0}, [0]
    while frontier:
        top = frontier.pop()
        for v in range(top + 1, n):
            if matrix[top][v] and v not in from_input:
                from_input.add(v)
                frontier.append(v)
    to_output, frontier = {n - 1}, [n - 1]
    while frontier:
        top = frontier.pop()
        for v in range(top):
            if matrix[v][top] and v not in to_output:
                to_output.add(v)
                frontier.append(v)
    keep = sorted(from_input & to_output)
    if len(keep) < 2:
        return None
    return tuple(tuple(matrix[i][j] for j in keep) for i in keep), tuple(ops[i] for i in keep)


def _problem(matrix: Matrix, ops: tuple[str, ...]) -> str | None:
    """Why ``(matrix, ops)`` is not a valid NAS-Bench-101 spec, or ``None`` if it is."""
    n = len(matrix)
    if len(ops) != n:
        return f"{len(ops)} ops for a {n} x {n} matrix; give one op per vertex"
    for i in range(n):
        for j in range(i + 1):
            if matrix[i][j]:
                return (
                    f"adjacency matrix entry [{i}][{j}] is 1; the matrix must be upper-triangular "
                    "(zero on and below the diagonal: edges go from a vertex to a later one)"
                )
    if ops[0] != INPUT:
        return f"first op is {ops[0]!r}; it must be {INPUT!r}"
    if ops[-1] != OUTPUT:
        return f"last op is {ops[-1]!r}; it must be {OUTPUT!r}"
    for k, op in enumerate(ops[1:-1], start=1):
        if op not in OPS:
            return f"unknown op {op!r} at vertex {k}; allowed: {', '.join(OPS)}"
    pruned = prune(matrix, ops)
    if pruned is None:
        return "the input does not reach the output (no input-to-output path)"
    edges = sum(map(sum, pruned[0]))
    if edges > MAX_EDGES:
        return f"the cell has {edges} edges after pruning; NAS-Bench-101 allows at most {MAX_EDGES}"
    return None


def problem(matrix: Any, ops: Sequence[str]) -> str | None:
    """Why ``(matrix, ops)`` is not a valid spec (the message :class:`NB101Arch` raises), or ``None``."""
    return _problem(_as_matrix(matrix), tuple(ops))


@lru_cache(maxsize=65536)
def hash_module(matrix: Matrix, labels: tuple[int, ...]) -> str:
    """The benchmark's graph hash (``graph_util.hash_module``) of a labelled DAG.

    Each vertex starts from the MD5 of ``(out_degree, in_degree, label)`` and, V times over, is
    re-hashed from its sorted in-neighbour hashes, its sorted out-neighbour hashes and itself;
    the fingerprint is the MD5 of the sorted vertex hashes. Isomorphic graphs hash equal.
    """
    n = len(matrix)
    in_edges = [sum(matrix[w][v] for w in range(n)) for v in range(n)]
    out_edges = [sum(matrix[v]) for v in range(n)]
    # The benchmark hashes str() of a tuple of Python ints, e.g. "(2, 0, -1)".
    hashes = [hashlib.md5(str((out_edges[v], in_edges[v], labels[v])).encode("utf-8")).hexdigest() for v in range(n)]
    for _ in range(n):
        hashes = [
            hashlib.md5(
                (
                    "".join(sorted(hashes[w] for w in range(n) if matrix[w][v]))
                    + "|"
                    + "".join(sorted(hashes[w] for w in range(n) if matrix[v][w]))
                    + "|"
                    + hashes[v]
                ).encode("utf-8")
            ).hexdigest()
            for v in range(n)
        ]
    return hashlib.md5(str(sorted(hashes)).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NB101Arch:
    """One NAS-Bench-101 spec: adjacency matrix and op labels, as given (not pruned).

    Accepts nested lists or arrays and stores tuples, so the value is hashable. Raises
    ``ValueError`` naming the rule broken: a matrix that is not square with 2 <= V <= 7, an entry
    other than 0/1, an entry on or below the diagonal, a wrong op count, a first op other than
    ``input`` or last other than ``output``, an unknown op, an input that does not reach the
    output, more than 9 edges after pruning.
    """

    matrix: Matrix
    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "matrix", _as_matrix(self.matrix))
        if isinstance(self.ops, str) or not isinstance(self.ops, Sequence | np.ndarray):
            raise TypeError(f"ops must be a sequence of op labels, got {type(self.ops).__name__}")
        ops = tuple(str(op) if isinstance(op, np.str_) else op for op in self.ops)
        for op in ops:
            if not isinstance(op, str):
                raise TypeError(f"op labels must be str, got {op!r}")
        object.__setattr__(self, "ops", ops)
        why = _problem(self.matrix, self.ops)
        if why is not None:
            raise ValueError(f"invalid NAS-Bench-101 cell: {why}")

    @property
    def num_vertices(self) -> int:
        return len(self.matrix)

    @property
    def num_edges(self) -> int:
        """Edges of the spec as given (pruned or not)."""
        return sum(map(sum, self.matrix))

    def pruned(self) -> NB101Arch:
        """The same network with the vertices off every input-to-output path removed."""
        result = prune(self.matrix, self.ops)
        assert result is not None, "a validated cell always prunes"
        return self if result[0] == self.matrix else NB101Arch(*result)

    def module_hash(self) -> str:
        """The benchmark's isomorphism-invariant hash of the pruned cell (the dataset's key)."""
        p = self.pruned()
        labels = (-1, *(OPS.index(op) for op in p.ops[1:-1]), -2)
        return hash_module(p.matrix, labels)

    def encode(self) -> str:
        """The canonical string (see the module docstring)."""
        return encode(self)

    @classmethod
    def decode(cls, text: str) -> NB101Arch:
        return decode(text)

    def __str__(self) -> str:
        return encode(self)


def encode(arch: NB101Arch) -> str:
    """``<rows as 0/1 digits, '/'-joined>;<ops, ','-joined>``."""
    rows = "/".join("".join(str(v) for v in row) for row in arch.matrix)
    return f"{rows};{','.join(arch.ops)}"


def decode(text: str) -> NB101Arch:
    """Parse :func:`encode`'s string; ``ValueError`` naming the bad part."""
    if not isinstance(text, str):
        raise TypeError(f"a NAS-Bench-101 cell string must be str, got {type(text).__name__}")
    rows_part, sep, ops_part = text.strip().partition(";")
    if not sep or ";" in ops_part:
        raise ValueError(
            f"malformed NAS-Bench-101 cell {text!r}: expected '<row>/<row>/...;<op>,<op>,...' "
            "with one ';' between the matrix rows and the ops"
        )
    rows = rows_part.split("/")
    matrix = []
    for i, row in enumerate(rows):
        if not row or any(ch not in "01" for ch in row):
            raise ValueError(f"row {i} {row!r} of {text!r} must be a string of 0/1 digits")
        matrix.append([int(ch) for ch in row])
    ops = ops_part.split(",")
    return NB101Arch(matrix, ops)
