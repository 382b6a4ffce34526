"""One task's delta of one tensor in the form the multi-tenant forward uses (:mod:`.tenants`).

Decoded once, at load, from a packed entry (:mod:`.packed`) by :func:`tenant_delta`, the smallest
form that stays fast: ``int8`` signs for a T-Switch vector, a CSR for a sparse matrix (applied
through ``embedding_bag``), dense float32 for a small tensor, or the bit planes themselves, decoded
per use, for a large dense-ish one. Each form offers ``dense()``, ``linear(x)`` (``x · deltaᵀ``),
``rows(ids)`` (``delta[ids]``) and ``add_to(out, w)`` (for merging), and reports its ``nbytes``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .packed import PackedSwitch

# Deltas of at most this many entries may be kept dense float32 (small kernels), when a CSR is larger.
SMALL_NUMEL = 1 << 12
# Above this density a CSR (4-byte column + 4-byte value per kept entry) outweighs the bit planes
# (2 bits per entry) by 4x: such deltas stay packed and are decoded per layer (:class:`Streamed`).
MAX_SPARSE_DENSITY = 1 / 16


# -- one task's delta of one tensor, in the form its layer uses ------------------------------------
def _dense_of(entry, shape: tuple[int, ...], lut: torch.Tensor, device) -> torch.Tensor:
    out = torch.zeros(math.prod(shape), dtype=torch.float32, device=device)
    entry.add_to(out, 1.0, lut)
    return out.view(shape)


@dataclass(frozen=True)
class DenseRows:
    """A small delta, dense float32."""

    values: torch.Tensor

    @property
    def nbytes(self) -> int:
        return self.values.numel() * 4

    def dense(self) -> torch.Tensor:
        return self.values

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(self.values.dtype), self.values)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.values)

    def add_to(self, out: torch.Tensor, weight: float) -> None:
        out.add_(self.values.reshape(-1).to(out.dtype), alpha=weight)


@dataclass(frozen=True)
class SignRows:
    """A small T-Switch delta as ``int8`` signs (-1, 0, +1) and its scale: a quarter of float32."""

    signs: torch.Tensor
    scale: float

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.signs.shape)

    @property
    def nbytes(self) -> int:
        return self.signs.numel() + 4

    def dense(self) -> torch.Tensor:
        return self.signs.float() * self.scale

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(torch.float32), self.dense())

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.dense())

    def add_to(self, out: torch.Tensor, weight: float) -> None:
        out.add_(self.signs.reshape(-1).to(out.dtype), alpha=weight * self.scale)


@dataclass(frozen=True)
class SparseRows:
    """A sparse delta as a CSR matrix of its 2-D view ``(shape[0], prod(shape[1:]))``; the values
    carry the scale (and, for a quantised switch, the level)."""

    shape: tuple[int, ...]
    crow: torch.Tensor  # (rows + 1,) int32
    col: torch.Tensor  # (nnz,) int32
    values: torch.Tensor  # (nnz,) float32

    @classmethod
    def from_dense(cls, dense: torch.Tensor) -> SparseRows:
        flat = dense.reshape(dense.shape[0], -1)
        row, col = flat.nonzero(as_tuple=True)  # row-major order: a CSR's
        counts = torch.bincount(row, minlength=flat.shape[0])
        crow = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
        return cls(tuple(dense.shape), crow.to(torch.int32), col.to(torch.int32), flat[row, col].contiguous())

    @property
    def nbytes(self) -> int:
        return 4 * (self.crow.numel() + self.col.numel() + self.values.numel())

    def dense(self) -> torch.Tensor:
        out = torch.zeros(math.prod(self.shape), device=self.values.device)
        self.add_to(out, 1.0)
        return out.view(self.shape)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """``x · deltaᵀ`` for ``x`` of shape ``(..., cols)``: output unit ``o`` sums its kept inputs'
        columns of ``x`` times their values, one ``embedding_bag`` over the CSR rows (2-7x faster
        than ``torch.sparse.mm`` on CPU at the suites' densities, benchmarks/bench_engine.py):
        :meth:`product` over the last axis."""
        return self.product(x, x.dim() - 1)

    def product(self, x: torch.Tensor, channel_dim: int, weights: torch.Tensor | None = None) -> torch.Tensor:
        """``w_i · x_i · deltaᵀ`` over the ``channel_dim`` axis of a batch-first ``x`` (a linear's last
        axis, a 1×1 convolution's channels), with sample ``i`` scaled by ``weights[i]`` (none: 1).

        The same ``embedding_bag`` as :meth:`linear`, but ``embedding_bag``'s table (channels first)
        is written in one pass that also applies the weights, and the result comes back as a view
        in ``x``'s layout (channels at ``channel_dim``): no separate scaling pass over the output and,
        for a 1×1 convolution, no permute copy before the transpose (on two CPU cores 0.3x of a
        forward less at 8 tasks and batch 64; docs/ENGINE.md)."""
        src = x.movedim(channel_dim, 0)  # (C, n, ...), a view
        table = torch.empty(src.shape, dtype=self.values.dtype, device=x.device)
        if weights is None:
            table.copy_(src)
        else:
            shape = [1, -1] + [1] * (src.dim() - 2)
            torch.mul(src.to(self.values.dtype), weights.view(shape).to(self.values.dtype), out=table)
        out = F.embedding_bag(
            self.col, table.view(src.shape[0], -1), self.crow[:-1], mode="sum", per_sample_weights=self.values
        )
        return out.view(self.shape[0], *src.shape[1:]).movedim(0, channel_dim)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """``delta[ids]``: the rows ``ids`` (any shape) gathered into ``(*ids.shape, cols)``."""
        unique, inverse = torch.unique(ids.reshape(-1), return_inverse=True)
        crow = self.crow.long()
        starts, lengths = crow[unique], crow[unique + 1] - crow[unique]
        slot = torch.repeat_interleave(torch.arange(unique.numel(), device=ids.device), lengths)
        first = torch.cumsum(lengths, 0) - lengths
        source = starts[slot] + torch.arange(slot.numel(), device=ids.device) - first[slot]
        block = torch.zeros(unique.numel(), math.prod(self.shape[1:]), device=ids.device)
        block[slot, self.col[source].long()] = self.values[source]
        return block[inverse].view(*ids.shape, -1)

    def csr(self) -> torch.Tensor:
        """The delta's 2-D view as a ``torch.sparse_csr`` tensor sharing this CSR's arrays."""
        rows = self.shape[0]
        return torch.sparse_csr_tensor(
            self.crow, self.col, self.values, (rows, math.prod(self.shape[1:])), check_invariants=False
        )

    def plus(self, base: torch.Tensor, weight: float) -> torch.Tensor:
        """A new ``base + weight · delta`` in float32, in one pass over ``base`` (no copy first)."""
        if base.dtype == self.values.dtype:
            try:
                return torch.add(base.reshape(self.shape[0], -1), self.csr(), alpha=weight).view(base.shape)
            except (RuntimeError, NotImplementedError):
                pass
        total = base.to(torch.float32, copy=True)
        self.add_to(total.view(-1), weight)
        return total

    def add_to(self, out: torch.Tensor, weight: float) -> None:
        """``out += weight · delta`` (``out`` flat): one sparse-CSR add, 7x faster than scattering
        through computed row indices at 3% density (benchmarks/bench_engine.py), the scatter where
        the CSR add is not available (a dtype or device without it)."""
        view = out.view(self.shape[0], -1)
        if view.dtype == self.values.dtype:
            try:
                view.add_(self.csr(), alpha=weight)
                return
            except (RuntimeError, NotImplementedError):
                pass
        rows = torch.repeat_interleave(
            torch.arange(self.shape[0], device=out.device), self.crow[1:].long() - self.crow[:-1].long()
        )
        view.index_put_((rows, self.col.long()), weight * self.values.to(out.dtype), accumulate=True)


@dataclass(frozen=True)
class Streamed:
    """A large delta too dense for a CSR: kept packed, decoded each time a layer needs it."""

    entry: Any  # a SwitchEntry of :mod:`.packed`
    shape: tuple[int, ...]
    lut: torch.Tensor

    @property
    def nbytes(self) -> int:
        return int(self.entry.nbytes)

    def dense(self) -> torch.Tensor:
        return _dense_of(self.entry, self.shape, self.lut, self.lut.device)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(torch.float32), self.dense())

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.dense())

    def add_to(self, out: torch.Tensor, weight: float) -> None:
        self.entry.add_to(out, weight, self.lut)


Delta = DenseRows | SignRows | SparseRows | Streamed


def tenant_delta(entry, lut: torch.Tensor) -> Delta:
    """The serving form of one packed entry (decoded once, at load), the smallest that is fast:

    1-D tensors dense (a T-Switch one as ``int8`` signs and its scale); otherwise a CSR when it is no
    larger than the dense tensor and at most 4x the packed bit planes (density up to
    ~:data:`MAX_SPARSE_DENSITY`), else dense when small (:data:`SMALL_NUMEL`), else kept packed and
    decoded per use (:class:`Streamed`)."""
    shape = tuple(entry.shape)
    dense = _dense_of(entry, shape, lut, lut.device)
    if len(shape) < 2:
        if isinstance(entry, PackedSwitch):  # scale · sign: one byte per entry, exact
            return SignRows(dense.sign().to(torch.int8), float(entry.scale))
        return DenseRows(dense)
    csr_bytes = 8 * int(torch.count_nonzero(dense)) + 4 * (shape[0] + 1)
    if csr_bytes <= 4 * dense.numel() and csr_bytes <= 4 * max(int(entry.nbytes), dense.numel() // 4):
        return SparseRows.from_dense(dense)
    if dense.numel() <= SMALL_NUMEL:
        return DenseRows(dense)
    return Streamed(entry, shape, lut)


def delta_nbytes(deltas: Mapping[str, Mapping[str, Delta]]) -> int:
    """Bytes the serving forms hold (CSR arrays, dense small deltas, packed streamed entries)."""
    return sum(d.nbytes for items in deltas.values() for d in items.values())
