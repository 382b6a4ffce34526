"""Multi-tenant forwards: every sample of a batch under its own merged weights, in one pass.

Auto-Switch (T-Switch Eq. 8) runs sample ``i`` at ``theta_i = theta_0 + sum_k w_ik · tau_k`` with
``tau_k = scale_k · mask_k ⊙ sign_k`` (Eq. 7; a FlexSwitch ``sass-q`` switch holds
``scale_k · level(code)`` at the kept entries, journal Eq. 15). No ``theta_i`` is ever built: each
layer kind takes the exact decomposition that suits it,

- **linear / 1×1 conv** (BitDelta, Punica): ``x_i theta_iᵀ = x_i W0ᵀ + sum_k w_ik · x_i tau_kᵀ``: one
  base product for the whole batch, then per task one *sparse* product over only the samples whose
  weight for it is non-zero (:class:`~.deltas.SparseRows`, CSR);
- **embedding**: ``E0[ids_i] + sum_k w_ik · tau_k[ids_i]``, rows gathered from the sparse delta;
- **small tensors** (biases, norms, depthwise kernels): the delta kept dense (:class:`~.deltas.DenseRows`) and
  either applied per task over its samples (convolutions) or ``theta_i`` materialised per sample
  (``(B, numel)``: LayerNorm / BatchNorm affine and statistics, biases);
- **large, dense-ish deltas** (density above :data:`~.deltas.MAX_SPARSE_DENSITY`, where a CSR would take more
  memory than the bit planes): kept packed and decoded layer by layer into a transient tensor just
  before it is used (:class:`~.deltas.Streamed`, "layer-streamed merging").

So a batch costs one forward plus, per task it uses, work proportional to that task's kept entries
and its samples, whatever the number of distinct weight vectors; no merged model is stored.

The weights reach the backbone as :class:`MixedWeight` tensors passed to
``torch.func.functional_call`` (no module is mutated): a ``torch.Tensor`` subclass whose
``__torch_function__`` routes ``F.linear``, ``F.conv2d``, ``F.embedding``, ``F.layer_norm`` and
``F.batch_norm`` to the handlers of :data:`HANDLERS`. Any other use of a mixed weight that computes a
tensor raises :class:`UnsupportedOp`, and the engine falls back to merging (:mod:`.engine`): an
architecture this module does not know is slower, never wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._pytree import tree_leaves

from .deltas import Delta, SparseRows


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

    @classmethod
    def of(cls, weights: torch.Tensor) -> Mix:
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
        return cls(weights, users, spans, frozenset(unit))

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
    mix = t.mix
    out = torch.zeros(mix.batch, t.base.numel(), device=t.base.device)
    for k, delta in t.parts:
        out.addmm_(mix.weights[:, k : k + 1], delta.dense().reshape(1, -1).float())
    return out.view(mix.batch, *t.base.shape)


def per_sample(t: MixedWeight) -> torch.Tensor:
    """``(B, *shape)``: ``theta_0 + sum_k w_ik delta_k`` for every sample (small tensors only), float32."""
    return t.base.float().unsqueeze(0) + sample_delta(t)


def _batch_of(x: torch.Tensor, mix: Mix, what: str) -> None:
    if x.dim() == 0 or x.shape[0] != mix.batch:
        raise UnsupportedOp(f"{what}: input of shape {tuple(x.shape)} is not batch-first for batch {mix.batch}")


def _add_rows(out: torch.Tensor, k: int, mix: Mix, value: torch.Tensor) -> None:
    """``out[rows of k] += w_k · value``."""
    rows, w = mix.users[k]
    scaled = value if k in mix.unit else value * w.view(-1, *([1] * (value.dim() - 1))).to(value.dtype)
    scaled = scaled.to(out.dtype)
    span = mix.spans.get(k)
    if span is not None:
        out[span] += scaled
    else:
        out.index_add_(0, rows, scaled)


def _add_bias(out: torch.Tensor, bias: MixedWeight | None, channel_dim: int) -> torch.Tensor:
    if bias is None or not bias.parts:
        return out
    delta = sample_delta(bias)  # (B, C)
    shape = [out.shape[0]] + [1] * (out.dim() - 1)
    shape[channel_dim] = delta.shape[1]
    return out + delta.view(shape).to(out.dtype)


# -- the handlers -----------------------------------------------------------------------------------
def _linear(x, weight, bias=None):
    w0, w = _split(weight)
    b0, b = _split(bias)
    mix = _mix_of(weight, bias)
    out = F.linear(x, w0, b0)
    if mix is None:
        return out
    if w is not None and w.parts:
        _batch_of(x, mix, "linear")
        for k, delta in w.parts:
            _add_rows(out, k, mix, delta.linear(mix.take(x, k)))
    if b is not None and b.parts:
        _batch_of(x, mix, "linear")
        out = _add_bias(out, b, out.dim() - 1)
    return out


def _conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    w0, w = _split(weight)
    b0, b = _split(bias)
    mix = _mix_of(weight, bias)
    out = F.conv2d(x, w0, b0, stride, padding, dilation, groups)
    if mix is None:
        return out
    _batch_of(x, mix, "conv2d")
    pointwise = w0.shape[2:] == (1, 1) and groups == 1 and stride in (1, (1, 1)) and padding in (0, (0, 0))
    for k, delta in w.parts if w is not None else ():
        xs = mix.take(x, k)
        if pointwise and isinstance(delta, SparseRows):
            value = delta.linear(xs.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        else:
            value = F.conv2d(xs.float(), delta.dense(), None, stride, padding, dilation, groups)
        _add_rows(out, k, mix, value)
    return _add_bias(out, b, 1)


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
    base: Mapping[str, torch.Tensor], deltas: Mapping[str, Mapping[str, Delta]], tasks, weights: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The weights to run a batch with: a :class:`MixedWeight` for every tensor an active task covers.

    Args:
        base: ``theta_0``.
        deltas: ``{task: {tensor: delta}}`` (:func:`tenant_delta`).
        tasks: the ``K`` tasks in column order.
        weights: ``(B, K)``.
    """
    mix = Mix.of(weights)
    parts: dict[str, list[tuple[int, Delta]]] = {}
    for k in mix.users:
        for name, delta in deltas[tasks[k]].items():
            parts.setdefault(name, []).append((k, delta))
    return {name: MixedWeight(base[name], p, mix) for name, p in parts.items()}
