"""Multi-tenant forwards: every sample of a batch under its own merged weights, in one pass.

Auto-Switch (T-Switch Eq. 8) runs sample ``i`` at ``theta_i = theta_0 + sum_k w_ik · tau_k`` with
``tau_k = scale_k · mask_k ⊙ sign_k`` (Eq. 7; a FlexSwitch ``sass-q`` switch holds
``scale_k · level(code)`` at the kept entries, journal Eq. 15). No ``theta_i`` is ever built: each
layer kind takes the exact decomposition that suits it,

- **linear and convolution, a group of many rows** (layer-streamed merging): the batch is sorted so
  that samples with the same weight vector form one run (a *group*); a group with at least
  ``buffer_rows`` (:data:`BUFFER_MIN_ROWS`) rows of the layer's input (tokens, pixels) gets that
  one layer merged, ``W0 + sum_k w_gk tau_k``, into a transient buffer just before its product, and its rows go
  through the merged layer: the product costs what the plain one does, and the merge one pass over
  the layer's weights, whatever the number of tasks;
- **linear / 1×1 conv, the remaining rows** (BitDelta, Punica): ``x_i theta_iᵀ = x_i W0ᵀ + sum_k
  w_ik · x_i tau_kᵀ``: one base product for those rows, then per task one *sparse* product over
  only the samples whose weight for it is non-zero (:class:`~.deltas.SparseRows`, CSR), cheaper than
  a merge for a few rows;
- **embedding**: ``E0[ids_i] + sum_k w_ik · tau_k[ids_i]``, rows gathered from the sparse delta;
- **small tensors** (biases, norms, depthwise kernels): the delta kept dense (:class:`~.deltas.DenseRows`) and
  either applied per task over its samples (convolutions) or ``theta_i`` materialised per sample
  (``(B, numel)``: LayerNorm / BatchNorm affine and statistics, biases);
- **large, dense-ish deltas** (density above :data:`~.deltas.MAX_SPARSE_DENSITY`, where a CSR would take more
  memory than the bit planes): kept packed and decoded layer by layer into a transient tensor just
  before it is used (:class:`~.deltas.Streamed`, "layer-streamed merging").

So a batch costs one forward plus, per layer, one merge per large group and, for the rest, work
proportional to each task's kept entries and its samples; no merged model is stored, and nothing
outlives the call but the output (one layer's buffer at a time).

The weights reach the backbone as :class:`MixedWeight` tensors passed to
``torch.func.functional_call`` (no module is mutated): a ``torch.Tensor`` subclass whose
``__torch_function__`` routes ``F.linear``, ``F.conv2d``, ``F.embedding``, ``F.layer_norm`` and
``F.batch_norm`` to the handlers of :data:`HANDLERS`. Any other use of a mixed weight that computes a
tensor raises :class:`UnsupportedOp`, and the engine falls back to merging (:mod:`.engine`): an
architecture this module does not know is slower, never wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._pytree import tree_leaves

from .deltas import Delta, SparseRows

# A group of samples sharing one weight vector gets a layer merged for it (one pass over the layer's
# weights) when it sends at least this many rows (samples × tokens, or × pixels) through the layer;
# fewer rows take the sparse per-task products. Crossover measured on 2 CPU cores for MiniLM's
# 384×1536 layers at densities 0.03-0.3 (benchmarks/bench_engine.py --buffer-rows): a merge costs
# about what the CSR products of 50-150 rows do. The default of ``DynamicMergeEngine(buffer_rows=)``.
BUFFER_MIN_ROWS = 96


class UnsupportedOp(RuntimeError):
    """A mixed weight reached an operation this module has no exact per-sample rule for."""


# -- the batch's weights, and a weight that knows them ----------------------------------------------
@dataclass(frozen=True)
class Mix:
    """Per-sample switch weights of one batch.

    Attributes:
        weights: ``(B, K)`` float32, on the adapter's device.
        users: per task with a non-zero weight somewhere: ``(rows (n,), their weights (n,))``.
    """

    weights: torch.Tensor
    users: Mapping[int, tuple[torch.Tensor, torch.Tensor]]
    spans: Mapping[int, slice]  # tasks whose rows are one contiguous run of the batch
    unit: frozenset[int]  # tasks whose every non-zero weight is 1 (one-hot routes): no scaling
    # runs of equal rows of ``weights``: (rows, {task: weight} of its non-zero weights)
    groups: tuple[tuple[slice, tuple[tuple[int, float], ...]], ...] = ()
    buffer_rows: int = BUFFER_MIN_ROWS  # rows from which a group gets a layer merged for it
    _rest: dict = field(default_factory=dict, compare=False, repr=False)  # memo of :meth:`rest`

    @classmethod
    def of(cls, weights: torch.Tensor, buffer_rows: int = BUFFER_MIN_ROWS) -> Mix:
        users, spans, unit = {}, {}, set()
        for k in range(weights.shape[1]):
            rows = torch.nonzero(weights[:, k]).flatten()
            if rows.numel():
                users[k] = (rows, weights[rows, k])
                first, last = int(rows[0]), int(rows[-1])
                if last - first + 1 == rows.numel():
                    spans[k] = slice(first, last + 1)
                if bool((users[k][1] == 1).all()):
                    unit.add(k)
        groups = []
        if weights.shape[0]:
            change = (weights[1:] != weights[:-1]).any(1).nonzero().flatten().add(1).tolist()
            bounds = [0, *change, weights.shape[0]]
            firsts = weights[bounds[:-1]].tolist()
            for start, stop, row in zip(bounds[:-1], bounds[1:], firsts):
                groups.append((slice(start, stop), tuple((k, w) for k, w in enumerate(row) if w != 0.0)))
        return cls(weights, users, spans, frozenset(unit), tuple(groups), buffer_rows)

    def rest(self, merged: tuple[int, ...]) -> tuple[torch.Tensor, Mix]:
        """The rows outside the groups ``merged`` (indices into :attr:`groups`) and their own Mix."""
        if merged not in self._rest:
            taken = set(merged)
            rows = [
                r for g, (span, _) in enumerate(self.groups) if g not in taken for r in range(span.start, span.stop)
            ]
            index = torch.tensor(rows, dtype=torch.long, device=self.weights.device)
            self._rest[merged] = (index, Mix.of(self.weights.index_select(0, index), self.buffer_rows))
        return self._rest[merged]

    def take(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Task ``k``'s samples of a batch-first ``x`` (a view when they are contiguous)."""
        span = self.spans.get(k)
        return x[span] if span is not None else x.index_select(0, self.users[k][0])

    @property
    def batch(self) -> int:
        return self.weights.shape[0]


class MixedWeight(torch.Tensor):
    """``theta_0`` of one tensor plus the active tasks' deltas and the batch's :class:`Mix`.

    Its storage is ``theta_0``'s; every value-reading operation goes through :data:`HANDLERS`.
    """

    base: torch.Tensor
    parts: tuple[tuple[int, Delta], ...]
    mix: Mix

    @staticmethod
    def __new__(cls, base: torch.Tensor, parts, mix: Mix):
        t = torch.Tensor._make_subclass(cls, base.detach(), False)
        t.base, t.parts, t.mix = base.detach(), tuple(parts), mix
        return t

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        handler = HANDLERS.get(func)
        if handler is not None:
            return handler(*args, **kwargs)
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **kwargs)
        # only metadata may be read past the handlers (shape, dtype, device, dim(), .to() of itself):
        # anything else would see theta_0 alone and silently drop the deltas
        getter = getattr(func, "__name__", "") == "__get__"  # a property: .shape, .dtype, .device
        new_tensor = any(isinstance(x, torch.Tensor) and not any(x is a for a in args) for x in tree_leaves(out))
        if (func in METADATA or getter) and not new_tensor:
            return out
        raise UnsupportedOp(f"{getattr(func, '__qualname__', func)} on a per-sample weight")


def _split(t) -> tuple[Any, MixedWeight | None]:
    """``(the plain tensor, the mixed weight or None)``."""
    if isinstance(t, MixedWeight):
        return t.base, t
    return t, None


def sample_delta(t: MixedWeight) -> torch.Tensor:
    """``(B, *shape)``: ``sum_k w_ik delta_k`` for every sample (small tensors only), float32."""
    return _sample_rows(t.parts, t.mix, t.base.numel()).view(t.mix.batch, *t.base.shape)


def _sample_rows(parts, mix: Mix, numel: int) -> torch.Tensor:
    """``(B, numel)``: ``sum_k w_ik delta_k`` over ``parts`` for every sample of ``mix``, float32."""
    out = torch.zeros(mix.batch, numel, device=mix.weights.device)
    for k, delta in parts:
        out.addmm_(mix.weights[:, k : k + 1], delta.dense().reshape(1, -1).float())
    return out


def per_sample(t: MixedWeight) -> torch.Tensor:
    """``(B, *shape)``: ``theta_0 + sum_k w_ik delta_k`` for every sample (small tensors only), float32."""
    return t.base.float().unsqueeze(0) + sample_delta(t)


def _batch_of(x: torch.Tensor, mix: Mix, what: str) -> None:
    if x.dim() == 0 or x.shape[0] != mix.batch:
        raise UnsupportedOp(f"{what}: input of shape {tuple(x.shape)} is not batch-first for batch {mix.batch}")


def _add_rows(out: torch.Tensor, k: int, mix: Mix, value: torch.Tensor, weighted: bool = False) -> None:
    """``out[rows of k] += w_k · value`` (``weighted``: ``value`` already carries ``w_k``)."""
    rows, w = mix.users[k]
    weighted = weighted or k in mix.unit
    scaled = value if weighted else value * w.view(-1, *([1] * (value.dim() - 1))).to(value.dtype)
    scaled = scaled.to(out.dtype)
    span = mix.spans.get(k)
    if span is not None:
        out[span] += scaled
    else:
        out.index_add_(0, rows, scaled)


def _add_bias(out: torch.Tensor, parts, mix: Mix, channel_dim: int) -> torch.Tensor:
    if not parts:
        return out
    delta = _sample_rows(parts, mix, parts[0][1].dense().numel())  # (B, C)
    shape = [out.shape[0]] + [1] * (out.dim() - 1)
    shape[channel_dim] = delta.shape[1]
    return out + delta.view(shape).to(out.dtype)


def _merged(base: torch.Tensor, parts, weights: Mapping[int, float]) -> torch.Tensor | None:
    """``base + sum_k w_k delta_k`` over the ``parts`` a group uses (``None``: none), computed in
    float32 as :meth:`~.engine.DynamicMergeEngine.merged_weights` does, in ``base``'s dtype."""
    active = [(weights[k], delta) for k, delta in parts if k in weights]
    if not active:
        return None
    (w, first), rest = active[0], active[1:]
    if isinstance(first, SparseRows):  # base + w · delta in one pass (no copy of base first)
        total = first.plus(base.detach(), w)
    else:
        total = base.detach().to(torch.promote_types(base.dtype, torch.float32), copy=True)
        first.add_to(total.view(-1), w)
    for w, delta in rest:
        delta.add_to(total.view(-1), w)
    return total.to(base.dtype)


def _sparse_rest(x, w0, b0, w_parts, b_parts, mix: Mix, per_task, channel_dim: int, channels: bool) -> torch.Tensor:
    """The shared product of ``theta_0`` plus each task's own product over its samples.

    ``channels``: a delta's product is ``x · deltaᵀ`` over ``channel_dim`` (a linear, a pointwise
    convolution), so a sparse one scales its samples by their weights while laying out its input
    (:meth:`~.deltas.SparseRows.product`)."""
    out = per_task(x, w0, b0, None)
    for k, delta in w_parts:
        xs = mix.take(x, k)
        if channels and isinstance(delta, SparseRows):
            w = None if k in mix.unit else mix.users[k][1]
            _add_rows(out, k, mix, delta.product(xs, channel_dim, w), weighted=True)
        else:
            _add_rows(out, k, mix, per_task(xs, None, None, delta))
    return _add_bias(out, b_parts, mix, channel_dim)


def _by_groups(
    x, weight, bias, op, per_task, rows_per_sample: int, channel_dim: int, channels: bool = True
) -> torch.Tensor:
    """A linear or convolution under per-sample weights: groups with many rows through a layer merged
    for them (``mix.buffer_rows``), the other rows through :func:`_sparse_rest`.

    ``op(x, weight, bias)`` is the layer; ``per_task(x, w, b, delta)`` its product with ``w``/``b``
    (``delta`` None) or with a delta (no bias); ``channels``: see :func:`_sparse_rest`."""
    w0, w = _split(weight)
    b0, b = _split(bias)
    mix = _mix_of(weight, bias)
    if mix is None:
        return op(x, w0, b0)
    _batch_of(x, mix, op.__name__)
    w_parts = w.parts if w is not None else ()
    b_parts = b.parts if b is not None else ()
    sparse_only = all(isinstance(delta, SparseRows) for _, delta in w_parts)
    merge = tuple(
        g
        for g, (span, used) in enumerate(mix.groups)
        if used and (not sparse_only or (span.stop - span.start) * rows_per_sample >= mix.buffer_rows)
    )
    if not merge:
        return _sparse_rest(x, w0, b0, w_parts, b_parts, mix, per_task, channel_dim, channels)
    outs = []
    for g in merge:
        span, used = mix.groups[g]
        weights = dict(used)
        wg = _merged(w0, w_parts, weights)
        bg = _merged(b0, b_parts, weights) if b0 is not None else None
        outs.append(op(x[span], w0 if wg is None else wg, b0 if bg is None else bg))
    if len(merge) == len(mix.groups):
        return outs[0] if len(outs) == 1 else torch.cat(outs)
    index, rest = mix.rest(merge)
    rest_parts = [(k, d) for k, d in w_parts if k in rest.users]
    rest_bias = [(k, d) for k, d in b_parts if k in rest.users]
    rest_out = _sparse_rest(
        x.index_select(0, index), w0, b0, rest_parts, rest_bias, rest, per_task, channel_dim, channels
    )
    out = rest_out.new_empty((mix.batch, *rest_out.shape[1:]))
    out.index_copy_(0, index, rest_out)
    for g, part in zip(merge, outs):
        out[mix.groups[g][0]] = part
    return out


# -- the handlers -----------------------------------------------------------------------------------
def _linear(x, weight, bias=None):
    def per_task(xs, w, b, delta):
        return F.linear(xs, w, b) if delta is None else delta.linear(xs)

    rows = x[0].numel() // max(x.shape[-1], 1) if x.dim() > 1 else 1
    return _by_groups(x, weight, bias, F.linear, per_task, rows, x.dim() - 1)


def _conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    def op(xs, w, b):
        return F.conv2d(xs, w, b, stride, padding, dilation, groups)

    op.__name__ = "conv2d"
    w0 = _split(weight)[0]
    pointwise = w0.shape[2:] == (1, 1) and groups == 1 and stride in (1, (1, 1)) and padding in (0, (0, 0))

    def per_task(xs, w, b, delta):
        if delta is None:
            return op(xs, w, b)
        return F.conv2d(xs.float(), delta.dense(), None, stride, padding, dilation, groups)

    rows = x.shape[2] * x.shape[3] if x.dim() == 4 else 1
    return _by_groups(x, weight, bias, op, per_task, rows, 1, channels=pointwise and x.dim() == 4)


def _embedding(ids, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False, sparse=False):
    w0, w = _split(weight)
    if max_norm is not None:
        raise UnsupportedOp("embedding with max_norm renormalises its weight in place")
    out = F.embedding(ids, w0, padding_idx)
    if w is None or not w.parts:
        return out
    mix = w.mix
    if ids.shape[0] == 1 and mix.batch > 1:  # shared ids (position ids): one row of outputs per sample
        ids = ids.expand(mix.batch, *ids.shape[1:])
        out = out.expand(mix.batch, *out.shape[1:]).contiguous()
    _batch_of(ids, mix, "embedding")
    for k, delta in w.parts:
        _add_rows(out, k, mix, delta.rows(mix.take(ids, k)))
    return out


def _affine(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, channel_dim: int) -> torch.Tensor:
    shape = [x.shape[0]] + [1] * (x.dim() - 1)
    shape[channel_dim] = scale.shape[1]
    return torch.addcmul(shift.view(shape).to(x.dtype), x, scale.view(shape).to(x.dtype))


def _samples(t, mix: Mix, like: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` per-sample values of a norm's tensor (a plain one broadcast; ``None`` -> ``like``)."""
    if isinstance(t, MixedWeight):
        return per_sample(t).float()
    return (like if t is None else t).float().unsqueeze(0).expand(mix.batch, -1)


def _mix_of(*tensors) -> Mix | None:
    return next((t.mix for t in tensors if isinstance(t, MixedWeight) and t.parts), None)


def _layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    mix = _mix_of(weight, bias)
    w0, b0 = _split(weight)[0], _split(bias)[0]
    if mix is None:
        return F.layer_norm(x, normalized_shape, w0, b0, eps)
    if len(normalized_shape) != 1:
        raise UnsupportedOp("layer_norm over more than the last dimension")
    _batch_of(x, mix, "layer_norm")
    y = F.layer_norm(x, normalized_shape, None, None, eps)
    ones = torch.ones(x.shape[-1], device=x.device)
    return _affine(y, _samples(weight, mix, ones), _samples(bias, mix, ones * 0), y.dim() - 1)


def _batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    mix = _mix_of(running_mean, running_var, weight, bias)
    plain = [_split(t)[0] for t in (running_mean, running_var, weight, bias)]
    if mix is None:
        return F.batch_norm(x, *plain[:2], *plain[2:], training, momentum, eps)
    if training or running_mean is None or running_var is None:
        raise UnsupportedOp("batch_norm with batch statistics")
    _batch_of(x, mix, "batch_norm")
    ones = torch.ones(x.shape[1], device=x.device)
    mean, var = _samples(running_mean, mix, ones), _samples(running_var, mix, ones)
    scale = _samples(weight, mix, ones) / torch.sqrt(var + eps)
    return _affine(x, scale, _samples(bias, mix, ones * 0) - mean * scale, 1)


# Tensor methods that read no value (the deltas cannot change what they return)
METADATA = frozenset(
    {
        torch.Tensor.size,
        torch.Tensor.dim,
        torch.Tensor.numel,
        torch.Tensor.stride,
        torch.Tensor.element_size,
        torch.Tensor.is_floating_point,
        torch.Tensor.is_contiguous,
        torch.Tensor.__len__,
        torch.Tensor.to,  # only when it returns the tensor itself (checked in __torch_function__)
    }
)

HANDLERS: dict[Callable, Callable] = {
    F.linear: _linear,
    F.conv2d: _conv2d,
    F.embedding: _embedding,
    F.layer_norm: _layer_norm,
    F.batch_norm: _batch_norm,
}


def mixed_weights(
    base: Mapping[str, torch.Tensor],
    deltas: Mapping[str, Mapping[str, Delta]],
    tasks,
    weights: torch.Tensor,
    buffer_rows: int = BUFFER_MIN_ROWS,
) -> dict[str, torch.Tensor]:
    """The weights to run a batch with: a :class:`MixedWeight` for every tensor an active task covers.

    Args:
        base: ``theta_0``.
        deltas: ``{task: {tensor: delta}}`` (:func:`tenant_delta`).
        tasks: the ``K`` tasks in column order.
        weights: ``(B, K)``.
        buffer_rows: a group of samples with one weight vector sending at least this many rows
            through a linear or convolution gets that layer merged for it (``0``: every group;
            a huge value: none, only sparse per-task products where the deltas allow).
    """
    mix = Mix.of(weights, buffer_rows)
    parts: dict[str, list[tuple[int, Delta]]] = {}
    for k in mix.users:
        for name, delta in deltas[tasks[k]].items():
            parts.setdefault(name, []).append((k, delta))
    return {name: MixedWeight(base[name], p, mix) for name, p in parts.items()}
