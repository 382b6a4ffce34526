"""FlexSwitch results as ``.tsw`` entries, and the storage they take (journal §III-C4, Eq. 16-17).

Each module of a :class:`~tswitch.flex.train.FlexResult` becomes one payload of the pack:

- with a learned width ``b`` (``lgs+bas``, ``bas``): encoding ``sass-q`` — the SASS stream of the
  hard mask whose value codes are the ``b``-bit bin indices ``I`` of Eq. 13 — plus the float32
  scale ``softplus(kappa)`` and the float32 codebook row ``(lo, step) = (-v-max, delta)``. The
  tensor decodes to ``scale · (lo + (I + 0.5) · step)`` at kept entries: the final
  ``softplus(kappa) · M_hard ⊙ Q(tau; b)`` after Eq. 15;
- without one (``lgs``, the "Auto-Switch + LGS" ablation of Tab. XI): encoding ``sass`` with the
  polarity bit, i.e. B-Approx (journal Eq. 3) of the LGS vector ``softplus(kappa) · tau ⊙ M_hard``,
  whose knob is ``softplus(kappa) · ||tau ⊙ M_hard||_2 / sqrt(nnz)``.

A SASS payload holds exactly ``ceil(Eq16 / 8)`` bytes with the measured ``nnz`` in place of
``n (1 - alpha)`` (:func:`tswitch.codec.sass.sass_bits`); :func:`storage_breakdown` separates the
payloads from the per-tensor side information that Eq. 16 leaves out (scale, codebook).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..codec import container
from ..codec.header import CODEBOOK_FIELDS, TaskEntry, TensorSpec
from ..codec.layouts import AUTO, check_layout_choice, choose_layout
from ..codec.sass import sass_bits
from ..core.binary import switch_scale
from ..pack import DENSE, QUANTISED, EncodedTask, encode_dense
from .train import FlexResult, FlexTensor

POLARITY_BITS = 1
DENSE_BITS = 16  # tensor_bits of a dense-f16 tensor inside a quantised task (its codebook row is unused)


def _encode_one(t: FlexTensor, tau: torch.Tensor, layout: str) -> tuple[str, bytes, float, int, tuple[float, float]]:
    """``(encoding, payload, scale, bits, codebook row)`` of one module."""
    flat = tau.detach().reshape(-1).float()
    mask = t.mask.reshape(-1)
    kept = flat[mask]
    if t.bits is None:  # LGS only: B-Approx of softplus(kappa) · tau ⊙ M_hard (journal Eq. 3)
        scale = t.scale * switch_scale(flat, mask)
        lay = choose_layout(mask.numpy(), POLARITY_BITS, layout)
        return lay.name, lay.encode(mask.numpy(), (kept > 0).numpy(), POLARITY_BITS), scale, POLARITY_BITS, (0.0, 0.0)
    book = t.codebook
    if book is None:
        raise ValueError(f"FlexSwitch tensor {t.name} has {t.bits} bits and no codebook")
    codes = book.codes(kept)
    lay = choose_layout(mask.numpy(), book.bits, layout)
    return f"{lay.name}-q", lay.encode(mask.numpy(), codes.numpy(), book.bits), t.scale, book.bits, (book.lo, book.step)


def encode_flex_task(
    result: FlexResult,
    tau: Mapping[str, torch.Tensor],
    specs: Sequence[TensorSpec],
    layout: str = AUTO,
    labels: Sequence[str] | None = None,
    name: str | None = None,
    dense_pattern: str | None = None,
) -> EncodedTask:
    """One task's learned switches as a pack entry (``create_pack``/``add_task`` take it).

    Args:
        result: the task's :class:`FlexResult`.
        tau: its full-precision task vector (the values the codes quantise).
        specs: the pack's tensors, in pack order (:func:`tswitch.pack.tensor_specs` of the base).
        layout: ``"sass"`` (journal §III-C4), ``"bitmap"`` (the "Indep" scheme), ``"golomb"``, or
            ``"auto"`` (per tensor the smallest of them, docs/FORMAT.md §3).
        labels: class names of the task's head.
        name: the task's name in the pack (default: ``result.task``).
        dense_pattern: tensors whose name matches this regex are stored as dense float16
            (``dense-f16``, as :func:`tswitch.pack.encode_task` does for T-Switch) instead of a
            learned switch; ``result`` needs none for them (BatchNorm running statistics, whose
            quantisation can turn a variance negative, docs/FLEXSWITCH.md A17).

    Raises:
        ValueError: the result or ``tau`` lacks a tensor of ``specs``, or shapes differ.
    """
    check_layout_choice(layout)
    by_name = {t.name: t for t in result.tensors}
    dense_re = re.compile(dense_pattern) if dense_pattern else None
    rows, kept = [], []
    for spec in specs:
        if dense_re is not None and dense_re.search(spec.name):
            dense = tau[spec.name] if spec.name in tau else None  # a TaskVector has no .get
            if dense is None or tuple(dense.shape) != spec.shape:
                raise ValueError(f"task vector lacks tensor {spec.name} or its shape differs from {spec.shape}")
            rows.append((DENSE, encode_dense(dense), 1.0, DENSE_BITS, (0.0, 0.0)))
            kept.append(dense.numel())
            continue
        if spec.name not in by_name or spec.name not in tau:
            raise ValueError(f"FlexSwitch result of {result.task!r} lacks tensor {spec.name}")
        t = by_name[spec.name]
        if tuple(t.shape) != spec.shape or tuple(tau[spec.name].shape) != spec.shape:
            raise ValueError(f"shape mismatch for {spec.name}: {t.shape} vs {spec.shape}")
        rows.append(_encode_one(t, tau[spec.name], layout))
        kept.append(t.nnz)
    encodings = tuple(r[0] for r in rows)
    payloads = [r[1] for r in rows]
    scales = np.array([r[2] for r in rows], dtype=np.float32)
    quantised = any(e in QUANTISED for e in encodings)
    tensor_bits = tuple(r[3] for r in rows) if quantised else None
    codebook = np.array([r[4] for r in rows], dtype=np.float32).reshape(-1, CODEBOOK_FIELDS) if quantised else None
    nnz = tuple(kept)
    switched = [j for j, e in enumerate(encodings) if e != DENSE]
    n = sum(specs[j].numel for j in switched)
    density = sum(nnz[j] for j in switched) / n if n else 0.0
    cfg = result.config
    entry = TaskEntry(
        name=name or result.task,
        alpha=1.0 - density,
        density=density,
        layout=layout,
        bits=max((tensor_bits[j] for j in switched), default=POLARITY_BITS) if tensor_bits else POLARITY_BITS,
        encodings=encodings,
        nnz=nnz,
        nbytes=tuple(len(p) for p in payloads),
        checksum=container.payload_checksum(payloads, scales, codebook),
        labels=tuple(labels) if labels is not None else None,
        extra={
            "method": "flexswitch",
            "mode": cfg.mode,
            "loss": cfg.loss,
            "lambda": cfg.lam_value,
            "steps": cfg.steps,
            "exemplars": result.exemplars,
        },
        tensor_bits=tensor_bits,
    )
    return EncodedTask(entry, payloads, scales, tuple(s.name for s in specs), codebook)


def eq16_bits(n: int, density: float, bits: int, group: int) -> float:
    """Journal Eq. 16, the expected SASS size in bits: ``35 + n/c + n (1 - alpha)(ceil(log2 c) + b + 1)``."""
    return 35 + n / group + n * density * (math.ceil(math.log2(group)) + bits + 1)


def storage_breakdown(entry: TaskEntry, specs: Sequence[TensorSpec]) -> dict:
    """Bytes of one task, split into payloads (and their Eq. 16 count) and side information.

    Returns:
        ``{"payload_bytes", "eq16_bytes", "dense_bytes", "scale_bytes", "codebook_bytes", "total_bytes"}``
        (``dense_bytes``: the part of the payloads stored ``dense-f16``);
        ``eq16_bytes`` sums ``ceil(Eq16 / 8)`` over the switch tensors (measured ``nnz``): what
        their payloads would take in the ``sass`` layout, whatever layout they are stored in.
    """
    eq16 = 0
    for j, spec in enumerate(specs):
        if entry.encodings[j] != DENSE:
            eq16 += -(-sass_bits(spec.numel, entry.nnz[j], entry.widths[j]) // 8)
    codebook = CODEBOOK_FIELDS * 4 * len(specs) if entry.tensor_bits is not None else 0
    dense = sum(nb for nb, e in zip(entry.nbytes, entry.encodings) if e == DENSE)
    return {
        "payload_bytes": int(sum(entry.nbytes)),
        "eq16_bytes": eq16,
        "dense_bytes": int(dense),
        "scale_bytes": 4 * len(specs),
        "codebook_bytes": codebook,
        "total_bytes": entry.total_bytes,
    }
