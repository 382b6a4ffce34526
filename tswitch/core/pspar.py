"""P-Spar / P-Discard: pulse pruning of task vectors.

T-Switch paper §3.2, Eq. 2-3 (journal §III-B1, Eq. 2): the impulse activation ``g_m`` keeps an
entry when it lies above the upper threshold ``gamma_+`` or below the lower threshold ``gamma_-``,
both chosen as ``alpha``-quantiles of the positive and of the negative entries, so that the
``alpha`` fraction of smallest-magnitude positive entries *and* the ``alpha`` fraction of
smallest-magnitude negative entries are discarded.

Exact counts: per sign, ``kept = n_sign - floor(alpha * n_sign)``. Zeros are never kept. Ties at the
threshold are broken by position (lower flat index kept first), which makes the mask a pure function
of the tensor and ``alpha``.

The fast path selects the thresholds with a two-level radix select on the IEEE-754 bit pattern of
``|tau|`` (positive floats order like their int32 bit patterns), which costs a few passes over the
tensor instead of a sort or ``torch.kthvalue`` (~25M values/s here).
"""

from __future__ import annotations

import math

import numpy as np
import torch

_BINS = 1 << 16
_INT32_MIN = -(1 << 31)


def validate_alpha(alpha: float) -> float:
    """``alpha`` is the pruning rate (fraction dropped); density = 1 - alpha."""
    alpha = float(alpha)
    if not (0.0 <= alpha < 1.0) or math.isnan(alpha):
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    return alpha


def kept_count(n_sign: int, alpha: float) -> int:
    """Entries of one sign kept by P-Spar: ``n_sign - floor(alpha * n_sign)``."""
    return n_sign - math.floor(alpha * n_sign)


def _order_keys(flat: torch.Tensor) -> torch.Tensor:
    """int32 keys ordered like the magnitude *within* each sign.

    The int32 view ``v`` of a float32: for positives ``v = bits(|x|) > 0``; for negatives
    ``v = bits(|x|) - 2**31 < 0``. Within each sign, larger magnitude means larger ``v``;
    ``+0.0`` is ``0`` and ``-0.0`` is ``-2**31``.
    """
    return flat.contiguous().view(torch.int32)


def _kth_largest_key(cand: torch.Tensor, hist: torch.Tensor, lo_bin: int, k: int) -> int:
    """Exact k-th largest key of one sign, by a two-level radix select.

    ``hist`` counts the high halves (offset by 2**15) of that sign's keys over
    ``[lo_bin, lo_bin + 2**15)``; :func:`_pick_bin` gives the bin, ``cand`` holds that bin's keys,
    and a histogram of their low halves locates the value.
    """
    b, above = _pick_bin(hist, lo_bin, k)
    low = torch.bincount(cand & 0xFFFF, minlength=_BINS)
    cum_low = low.flip(0).cumsum(0).flip(0)
    lb = int((cum_low >= k - above).nonzero().max())
    return ((lo_bin + b - (1 << 15)) << 16) | lb


def _pick_bin(hist: torch.Tensor, lo_bin: int, k: int) -> tuple[int, int]:
    """The high-half bin holding the k-th largest key of one sign, and how many keys lie above it."""
    sub = hist[lo_bin : lo_bin + _BINS // 2]
    cum_from_top = sub.flip(0).cumsum(0).flip(0)
    b = int((cum_from_top >= k).nonzero().max())
    above = int(cum_from_top[b + 1]) if b + 1 < sub.numel() else 0
    return b, above


def pspar_mask(tau: torch.Tensor, alpha: float) -> torch.Tensor:
    """P-Spar activation switch ``g_m(tau)`` (T-Switch Eq. 2-3; journal Eq. 2).

    Args:
        tau: a task-vector tensor of any shape.
        alpha: pruning rate in [0, 1): the fraction of each sign's entries dropped.

    Returns:
        A bool tensor of ``tau``'s shape, True where the entry is kept.
    """
    alpha = validate_alpha(alpha)
    flat = tau.detach().reshape(-1).float()
    keys = _order_keys(flat)
    bins = keys >> 16
    bins += 1 << 15  # (n,) high half of each key, 0..65535: negatives below 2**15, positives above
    hist = torch.bincount(bins, minlength=_BINS)
    hist[_BINS // 2] -= int(torch.count_nonzero(keys == 0))  # +0.0 is never kept
    hist[0] -= int(torch.count_nonzero(keys == _INT32_MIN))  # nor is -0.0
    n_neg, n_pos = int(hist[: _BINS // 2].sum()), int(hist[_BINS // 2 :].sum())
    k_pos, k_neg = kept_count(n_pos, alpha), kept_count(n_neg, alpha)
    mask = torch.zeros(flat.shape, dtype=torch.bool)
    picks = {}
    for sign, k, lo in (("pos", k_pos, _BINS // 2), ("neg", k_neg, 0)):
        if k:
            b, _ = _pick_bin(hist, lo, k)
            picks[sign] = lo + b
    if not picks:
        return mask.view(tau.shape)
    in_bins = bins == (picks["pos"] if "pos" in picks else picks["neg"])
    if len(picks) == 2:
        in_bins |= bins == picks["neg"]
    cand = _select(keys, in_bins)  # the keys of the (at most two) bins holding the thresholds
    if k_pos:
        c = cand[(cand > 0)]
        thr = _kth_largest_key(c, hist, _BINS // 2, k_pos)
        mask |= keys >= thr
        _break_ties(
            mask, keys, thr, k_pos, int(torch.count_nonzero(c >= thr)) + _count_above(hist, picks["pos"], _BINS)
        )
    if k_neg:
        c = cand[(cand < 0) & (cand != _INT32_MIN)]
        thr = _kth_largest_key(c, hist, 0, k_neg)
        mask |= (keys >= thr) & (keys < 0)
        _break_ties(
            mask, keys, thr, k_neg, int(torch.count_nonzero(c >= thr)) + _count_above(hist, picks["neg"], _BINS // 2)
        )
    return mask.view(tau.shape)


def _select(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``values[mask]``; on the CPU through numpy's compress, several times faster."""
    if values.device.type == "cpu":
        return torch.from_numpy(np.compress(mask.numpy(), values.numpy()))
    return values[mask]


def _count_above(hist: torch.Tensor, bin_: int, end: int) -> int:
    return int(hist[bin_ + 1 : end].sum())


def _break_ties(mask: torch.Tensor, keys: torch.Tensor, thr: int, k: int, kept: int) -> None:
    """Keep exactly ``k`` of this sign: unkeep the last-positioned entries equal to ``thr``."""
    if kept > k:  # rare: ties at the threshold; keep the lowest positions
        ties = torch.nonzero(keys == thr).squeeze(1)
        mask[ties[ties.numel() - (kept - k) :]] = False


def pulse_mask(
    tau: torch.Tensor, alpha: float, mode: str = "low", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Masks of the pulse experiment (T-Switch §3.2 / Fig. 3; journal Fig. 1).

    ``mode``:
        - ``"low"`` (C1, keep high): discard the alpha fraction of smallest magnitudes per sign
          (this is :func:`pspar_mask`);
        - ``"high"`` (C2, keep low): discard the alpha fraction of *largest* magnitudes per sign;
        - ``"random"`` (C3, DARE-like): keep each non-zero entry with probability 1 - alpha
          (the caller rescales by ``1 / (1 - alpha)``).
    """
    alpha = validate_alpha(alpha)
    if mode == "low":
        return pspar_mask(tau, alpha)
    flat = tau.detach().reshape(-1).float()
    if mode == "high":
        return _keep_low(flat, alpha).view(tau.shape)
    if mode == "random":
        keep = torch.rand(flat.shape, generator=generator) >= alpha
        return (keep & (flat != 0)).view(tau.shape)
    raise ValueError(f"unknown pulse mode {mode!r}; valid: 'low', 'high', 'random'")


def _keep_low(flat: torch.Tensor, alpha: float) -> torch.Tensor:
    """Drop the ``floor(alpha * n_sign)`` largest magnitudes of each sign, keep the rest.

    The complement (among non-zeros) of P-Spar at pruning rate ``1 - alpha`` keeps the
    ``floor(alpha * n_sign)`` largest, up to the ``floor``/``ceil`` rounding, so it is computed as
    the top-``floor(alpha * n)`` selection directly through :func:`_kth_largest_key`'s caller.
    """
    nonzero = flat != 0
    if alpha == 0:
        return nonzero
    pos, neg = flat > 0, flat < 0
    drop = torch.zeros_like(nonzero)
    for sel in (pos, neg):
        n_drop = math.floor(alpha * int(torch.count_nonzero(sel)))
        if n_drop:
            vals = flat.abs().masked_fill(~sel, -1.0)
            drop[torch.topk(vals, n_drop, sorted=False).indices] = True
    return nonzero & ~drop
