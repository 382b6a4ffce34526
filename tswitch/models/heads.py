"""Frozen task heads, built by name (``../shared/PROTOCOL.md``): the papers' regime needs heads fixed
*before* fine-tuning, without fitting anything on the task's features.

- ``zero-shot`` (text): the papers' CLIP head (CLIP §3.1.4) with the backbone itself as the text
  tower — per class, the prompt templates filled with the class name (or a short description) are
  embedded, L2-normalised, averaged, re-normalised; the head is that matrix times a logit scale and
  normalises the features it is given (:func:`zero_shot_head`).
- ``class-mean`` (images): the L2-normalised mean of the normalised pre-trained features of ``K``
  labelled training images per class, times a logit scale (:func:`class_mean_head`); the closest
  head to a zero-shot one when there is no text tower.
- ``linear-probe``: multinomial logistic regression on all training features (the first suites'
  head; makes Pre-trained nearly as good as Individual, kept for comparison).

:data:`HEAD_BUILDERS` maps each name to its builder, all called as
``builder(adapter, task, **options) -> Head`` with a :class:`HeadTask`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .base import Head

DEFAULT_LOGIT_SCALE = 20.0  # cosine logits x 20: PROTOCOL.md's pilot value (CLIP learns 100 for its own tower)


@dataclass(frozen=True)
class HeadTask:
    """What a head builder may look at: the task's classes and its *training* data only.

    Attributes:
        labels: class names, in label order.
        inputs: training inputs (texts or images).
        targets: their integer labels.
        descriptions: optional per-class phrases used in place of the bare class names by
            ``zero-shot`` (e.g. ``"business news"`` for class ``"business"``).
    """

    labels: tuple[str, ...]
    inputs: Sequence = ()
    targets: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    descriptions: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.labels) < 2:
            raise ValueError(f"a head needs at least 2 classes, got {len(self.labels)}")
        if self.descriptions is not None and len(self.descriptions) != len(self.labels):
            raise ValueError(f"{len(self.descriptions)} descriptions for {len(self.labels)} classes")


def _features(adapter, inputs: Sequence, batch_size: int = 64, normalize: bool = True) -> torch.Tensor:
    """``(N, D)`` pre-trained features (L2-normalised unless ``normalize=False``)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            batch = adapter.preprocess(list(inputs[start : start + batch_size]))
            out.append(adapter.features(batch, None).float().cpu())
    feats = torch.cat(out)
    return torch.nn.functional.normalize(feats, dim=-1) if normalize else feats


def _head(class_vectors: torch.Tensor, labels: Sequence[str], logit_scale: float) -> Head:
    weight = logit_scale * torch.nn.functional.normalize(class_vectors, dim=-1)
    return Head(weight=weight.contiguous(), bias=torch.zeros(len(labels)), labels=tuple(labels), normalize=True)


def zero_shot_head(
    adapter, task: HeadTask, *, templates: Sequence[str] = ("{}",), logit_scale: float = DEFAULT_LOGIT_SCALE
) -> Head:
    """The papers' zero-shot head with the backbone as text tower: for class ``c``,
    ``normalize(mean_t normalize(f(template_t(name_c))))`` times ``logit_scale``.

    Args:
        adapter: a text adapter (its ``features`` embed sentences).
        task: the classes; ``task.descriptions`` replace the names in the prompts when given.
        templates: prompts with one ``{}`` each.
        logit_scale: multiplies the cosine similarities.
    """
    if adapter.modality != "text":
        raise ValueError(f"zero-shot heads need a text backbone, {adapter.name!r} is {adapter.modality}")
    if not templates or any(t.count("{}") != 1 for t in templates):
        raise ValueError("templates must be non-empty prompts with exactly one '{}' each")
    names = task.descriptions or task.labels
    prompts = [t.format(name) for name in names for t in templates]
    emb = _features(adapter, prompts).view(len(names), len(templates), -1)  # (classes, templates, D)
    return _head(emb.mean(1), task.labels, logit_scale)


def class_mean_head(
    adapter, task: HeadTask, *, shots: int = 10, logit_scale: float = DEFAULT_LOGIT_SCALE, seed: int = 0
) -> Head:
    """A prototype head: per class, the normalised mean of the normalised pre-trained features of
    ``shots`` training inputs drawn with ``seed`` (fewer if the class has fewer), times ``logit_scale``."""
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    targets = np.asarray(task.targets)
    if targets.size != len(task.inputs):
        raise ValueError(f"{len(task.inputs)} inputs but {targets.size} targets")
    rng = np.random.default_rng(seed)
    picked = []
    for c in range(len(task.labels)):
        where = np.flatnonzero(targets == c)
        if where.size == 0:
            raise ValueError(f"class {task.labels[c]!r} has no training example")
        picked.append(rng.choice(where, size=min(shots, where.size), replace=False))
    feats = _features(adapter, [task.inputs[int(i)] for idx in picked for i in idx])
    sizes = [len(idx) for idx in picked]
    means = torch.stack([chunk.mean(0) for chunk in torch.split(feats, sizes)])
    return _head(means, task.labels, logit_scale)


def fit_probe(
    features: torch.Tensor,
    labels: np.ndarray,
    label_names: Sequence[str],
    *,
    steps: int = 300,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> Head:
    """Multinomial logistic regression on cached features (full-batch Adam), as a frozen :class:`Head`.

    Features are centred and divided by one global standard deviation inside the optimisation (a
    per-dimension one would amplify near-constant dimensions into huge weights that make the frozen
    head hypersensitive to fine-tuning); the scaling is folded back into the head's weight and
    bias, so the head applies to raw features.
    """
    g = torch.Generator().manual_seed(seed)
    x = features.float()
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    mean, std = x.mean(0), x.std().clamp_min(1e-6)
    z = (x - mean) / std
    num_classes = len(label_names)
    w = (0.01 * torch.randn(num_classes, x.shape[1], generator=g)).requires_grad_(True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w.T + b, y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        weight = w / std  # (C, D): z @ w.T = (x - mean) / std @ w.T
        bias = b - (mean / std) @ w.T
    return Head(weight=weight.detach().clone(), bias=bias.detach().clone(), labels=tuple(label_names))


def linear_probe_head(adapter, task: HeadTask, **options) -> Head:
    """Logistic regression on all training features (:func:`fit_probe`)."""
    if not len(task.inputs):
        raise ValueError("a linear probe needs training inputs")
    feats = _features(adapter, list(task.inputs), normalize=False)
    return fit_probe(feats, np.asarray(task.targets), task.labels, **options)


HEAD_BUILDERS: dict[str, Callable[..., Head]] = {
    "zero-shot": zero_shot_head,
    "class-mean": class_mean_head,
    "linear-probe": linear_probe_head,
}


def build_head(name: str, adapter, task: HeadTask, **options) -> Head:
    """Build a frozen head by name; unknown names list the valid ones."""
    try:
        builder = HEAD_BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown head {name!r}; valid: {', '.join(sorted(HEAD_BUILDERS))}") from None
    return builder(adapter, task, **options)


def head_accuracy(adapter, head: Head, inputs: Sequence, targets: np.ndarray, batch_size: int = 64) -> float:
    """Accuracy of ``head`` on the pre-trained features of ``inputs`` (to choose prompts on validation)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            batch = adapter.preprocess(list(inputs[start : start + batch_size]))
            out.append(head(adapter.features(batch, None).float()).argmax(-1))
    pred = torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)
    return float((pred == np.asarray(targets)).mean()) if len(pred) else 0.0


def choose_templates(
    adapter,
    task: HeadTask,
    candidates: Sequence[Sequence[str]],
    val_inputs: Sequence,
    val_targets: np.ndarray,
    logit_scale: float = DEFAULT_LOGIT_SCALE,
) -> tuple[tuple[str, ...], float]:
    """The template set (of ``candidates``) whose zero-shot head is most accurate on validation,
    and that accuracy; ties go to the earlier candidate."""
    best: tuple[tuple[str, ...], float] | None = None
    for cand in candidates:
        head = zero_shot_head(adapter, task, templates=tuple(cand), logit_scale=logit_scale)
        acc = head_accuracy(adapter, head, val_inputs, val_targets)
        if best is None or acc > best[1]:
            best = (tuple(cand), acc)
    if best is None:
        raise ValueError("no candidate templates")
    return best
