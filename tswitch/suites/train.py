"""The suites' fine-tuning recipe (``../shared/PROTOCOL.md``).

1. :func:`fit_probe`: a linear head on the **frozen pre-trained** features — the task's head forever
   after, and what "Pre-trained" means in every table.
2. :func:`finetune`: the whole backbone trained with that head frozen; the task vector is the
   backbone's change only (BatchNorm running statistics included when ``train_bn``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..models.base import Batch, Head
from ..models.common import tensors_of
from ..models.heads import fit_probe  # noqa: F401 - re-exported: the suites' linear-probe head


def batches(inputs: Sequence, size: int):
    for start in range(0, len(inputs), size):
        yield start, inputs[start : start + size]


def extract_features(
    adapter, inputs: Sequence, weights=None, batch_size: int = 64, route: bool = False
) -> torch.Tensor:
    """``(N, D)`` features of ``inputs`` (pre-trained weights unless ``weights`` is given)."""
    out = []
    for _, chunk in batches(inputs, batch_size):
        batch = adapter.preprocess(list(chunk))
        out.append(adapter.route_features(batch) if route else adapter.features(batch, weights))
    return torch.cat(out).float().cpu()


def finetune(
    adapter,
    head: Head,
    inputs: Sequence,
    labels: np.ndarray,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.0,
    train_bn: bool = True,
    dropout: bool = False,
    seed: int = 0,
    progress: Callable[[int, float], object] | None = None,
    stop: Callable[[], bool] | None = None,
    select: tuple[Sequence[int], Callable[[torch.nn.Module], float], list] | None = None,
) -> dict[str, torch.Tensor]:
    """Fine-tune the backbone with ``head`` frozen; returns its tensors (parameters and buffers).

    The batches are drawn by a generator seeded with ``seed``; without dropout (the default, as the
    papers' CLIP towers, which have none) nothing else is random, so the result is a function of the
    arguments alone and no process-global random state is read or changed.

    Args:
        train_bn: BatchNorm layers in train mode (running statistics follow the task's data) —
            otherwise they stay in eval mode and the statistics remain the pre-trained ones.
        dropout: keep the backbone's dropout (drawn from torch's global generator: not reproducible
            and not for a server process).
        progress: called as ``progress(step, loss)``.
        stop: polled before every step; when it returns true, training ends there (cancel, time cap).
        select: ``(steps, score, trace)``: after each of ``steps`` the module (in eval mode) is
            scored (validation accuracy) and ``(step, score)`` appended to ``trace``; the best-scoring
            state is returned (ties: the earlier one) instead of the last — steps chosen on validation.
    """
    rng = np.random.default_rng(seed)
    best = None  # (validation score, tensors) when selecting
    module = adapter.trainable_copy()
    if not dropout:
        for m in module.modules():
            if isinstance(m, torch.nn.modules.dropout._DropoutNd):
                m.p = 0.0  # also HF attention, which reads its dropout module's p
            elif hasattr(m, "drop_prob"):  # timm DropPath
                m.drop_prob = 0.0
    if not train_bn:
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    labels = np.asarray(labels)
    order = rng.permutation(len(inputs))
    cursor = 0
    for step in range(steps):
        if stop is not None and stop():
            break
        if cursor + batch_size > len(order):
            order, cursor = rng.permutation(len(inputs)), 0
        idx = order[cursor : cursor + batch_size]
        cursor += batch_size
        batch: Batch = adapter.preprocess([inputs[i] for i in idx])
        logits = head(adapter.features_of(module, batch))
        loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(labels[idx], dtype=torch.long))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress is not None:
            progress(step, float(loss.detach()))
        if select is not None and step + 1 in select[0]:
            best = _checkpoint(module, step + 1, select, best, train_bn)
    module.eval()
    if select is not None and best is not None:
        return best[1]
    return {k: v.detach().clone() for k, v in tensors_of(module).items()}


def _checkpoint(module, step: int, select, best, train_bn: bool):
    """Score ``module`` for ``select``; return the best ``(score, tensors)`` so far."""
    _, score, trace = select
    module.eval()
    value = float(score(module))
    module.train()
    if not train_bn:
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    trace.append((step, value))
    if best is None or value > best[0]:
        return value, {k: v.detach().clone() for k, v in tensors_of(module).items()}
    return best
