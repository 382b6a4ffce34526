"""Teach a suite one new task, the way the suite built its own (``../shared/PROTOCOL.md``).

:func:`teach` takes a visitor's :class:`~tswitch.teach.data.LabelledLines` and a loaded
:class:`~tswitch.suites.suite.Suite`, and

1. holds back a part of the lines (:func:`~tswitch.teach.data.split_held_back`);
2. builds a frozen **zero-shot head** from the label names, its prompt templates chosen among
   :data:`TEMPLATE_CANDIDATES` on the training lines only;
3. fine-tunes the backbone with that head frozen (the suite's recipe: optimiser, lr, batch) until the
   recipe's steps are done or the **time cap** is reached, whichever comes first; a cancel stops it;
4. turns the task vector into a **switch** with the suite's own alpha and layout (B-Approx,
   T-Switch Eq. 5-7), as ``.tsw`` bytes and packed for the dynamic-merge engine;
5. takes up to ``N`` exemplar features for the Auto-Switch router (pre-trained route features);
6. measures, on the held-back lines, Pre-trained, Individual and T-Switch accuracy and how often
   the router sends a held-back line to the new task.

The shared model is never modified: the fine-tune trains a copy (``adapter.trainable_copy()``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from ..core.binary import b_approx
from ..core.task_vector import TaskVector
from ..merging import DynamicMergeEngine, PackedSwitches
from ..models.base import Head
from ..models.heads import DEFAULT_LOGIT_SCALE, HeadTask, zero_shot_head
from ..pack import encode_task
from ..suites.train import extract_features, finetune
from .accuracy import Accuracy
from .config import DEFAULT_RECIPE, Progress, TeachCancelled, TeachConfig
from .data import LabelledLines, TeachError, split_held_back
from .task import TaughtTask


def manifest_of(suite) -> dict:
    """The suite's manifest as a plain dict (a :class:`~tswitch.suites.manifest.Manifest` or the JSON itself)."""
    manifest = suite.manifest
    return manifest.to_dict() if hasattr(manifest, "to_dict") else dict(manifest)


def recipe_of(suite) -> dict:
    """The suite's fine-tune recipe (``manifest["recipe"]["finetune"]``) over :data:`DEFAULT_RECIPE`."""
    given = (manifest_of(suite).get("recipe") or {}).get("finetune") or {}
    return {k: type(v)(given.get(k, v)) for k, v in DEFAULT_RECIPE.items()} | {
        "dropout": bool(given.get("dropout", False))
    }


def logit_scale_of(suite) -> float:
    """The suite's zero-shot logit scale (the row norm of a normalising head), else the default."""
    for head in suite.heads.values():
        if head.normalize and head.dense_weight is None:
            return float(head.weight.norm(dim=1).mean())
    return DEFAULT_LOGIT_SCALE


def choose_head(adapter, data: LabelledLines, config: TeachConfig, logit_scale: float) -> tuple[Head, tuple[str, ...]]:
    """The zero-shot head whose templates score best on (up to ``template_lines``) training lines."""
    rng = np.random.default_rng(config.seed)
    idx = np.sort(rng.permutation(len(data))[: config.template_lines])
    feats = extract_features(adapter, [data.texts[i] for i in idx])  # pre-trained, once for every candidate
    targets = torch.as_tensor(data.targets[idx])
    best: tuple[float, Head, tuple[str, ...]] | None = None
    for templates in config.templates:
        head = zero_shot_head(adapter, HeadTask(data.labels), templates=templates, logit_scale=logit_scale)
        acc = float((head(feats).argmax(-1) == targets).float().mean())
        if best is None or acc > best[0]:
            best = (acc, head, tuple(templates))
    if best is None:  # TeachConfig refuses an empty template list; kept for a config built otherwise
        raise TeachError("no prompt templates to choose a head from")
    return best[1], best[2]


def _correct(adapter, head: Head, data: LabelledLines, weights=None) -> Accuracy:
    feats = extract_features(adapter, list(data.texts), weights)
    return Accuracy(int((head(feats).argmax(-1).numpy() == data.targets).sum()), len(data))


def teach(
    suite,
    data: LabelledLines,
    name: str,
    config: TeachConfig | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> TaughtTask:
    """Teach ``suite`` the task ``name`` from ``data`` (see the module docstring).

    Raises:
        TeachError: the suite cannot take a new task (not text) or the name is taken.
        TeachCancelled: ``cancelled()`` turned true.
    """
    if suite.modality != "text":
        raise TeachError(f"suite {suite.name!r} takes images; a new task is taught on a text suite")
    if name in suite.task_names:
        raise TeachError(f"the suite already has a task called {name!r}")
    report = progress or (lambda *_: None)
    is_cancelled = cancelled or (lambda: False)
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    adapter, pack = suite.adapter, suite.pack
    config = config or TeachConfig()
    train, held = split_held_back(data, seed=config.seed)

    report("head", 0.0, {})
    head, templates = choose_head(adapter, train, config, logit_scale_of(suite))
    seconds["head"] = time.monotonic() - t0

    recipe = recipe_of(suite)
    steps = config.steps or recipe["steps"]
    start = time.monotonic()
    deadline = start + config.time_cap
    losses: list[float] = []

    def on_step(step: int, loss: float) -> None:
        losses.append(loss)
        share = max((step + 1) / steps, (time.monotonic() - start) / config.time_cap)
        report("fine-tune", 0.1 + 0.75 * min(1.0, share), {"step": step + 1, "steps": steps, "loss": loss})

    report("fine-tune", 0.1, {"step": 0, "steps": steps})
    device = adapter.device  # the head is built on the CPU; the fine-tune's features live on the adapter's device
    on_device = Head(head.weight.to(device), head.bias.to(device), head.labels, head.normalize)
    finetuned = finetune(
        adapter,
        on_device,
        list(train.texts),
        train.targets,
        steps=steps,
        batch_size=recipe["batch_size"],
        lr=recipe["lr"],
        weight_decay=recipe["weight_decay"],
        train_bn=recipe["train_bn"],
        dropout=recipe["dropout"],
        seed=config.seed,
        progress=on_step,
        stop=lambda: is_cancelled() or time.monotonic() > deadline,
    )
    if is_cancelled():
        raise TeachCancelled("cancelled: nothing was kept")
    seconds["fine-tune"] = time.monotonic() - start

    report("switch", 0.85, {})
    start = time.monotonic()
    base = adapter.state_dict()
    full = {**base, **{k: v for k, v in finetuned.items() if k in base}}
    del finetuned
    tau = TaskVector.from_state_dicts({k: v for k, v in base.items() if torch.is_floating_point(v)}, full)
    first = pack.header.tasks[0] if pack.header.tasks else None
    manifest = manifest_of(suite)
    alpha = first.alpha if first else float(manifest["alpha"])
    encoded = encode_task(
        name,
        tau,
        pack.header.tensors,
        alpha,
        first.layout if first else "auto",
        manifest.get("dense_pattern"),
        labels=data.labels,
    )
    dense = {s.name for s, e in zip(pack.header.tensors, encoded.entry.encodings) if e == "dense-f16"}
    items = {s.name: tau[s.name] if s.name in dense else b_approx(tau[s.name], alpha) for s in pack.header.tensors}
    switches = PackedSwitches.from_switches({name: items}).entries[name]
    matrices = [s.name for s in pack.header.tensors if len(s.shape) >= 2 and s.name not in dense]
    sample = matrices[len(matrices) // 2] if matrices else pack.header.tensors[0].name
    sample_tau = tau[sample].detach().clone()
    num_params = sum(s.numel for s in pack.header.tensors)
    del tau, items
    seconds["switch"] = time.monotonic() - start

    report("evaluate", 0.9, {})
    start = time.monotonic()
    rng = np.random.default_rng(config.seed)
    chosen = np.sort(rng.permutation(len(train))[: config.exemplars])
    exemplar_texts = tuple(train.texts[i] for i in chosen)
    exemplars = extract_features(adapter, list(exemplar_texts), route=True)
    engine = DynamicMergeEngine(adapter, base, PackedSwitches({name: switches}), {name: head}, cache_size=0)
    accuracy = {
        "pretrained": _correct(adapter, head, held),
        "individual": _correct(adapter, head, held, full),
        "t-switch": _correct(adapter, head, held, engine.merged_weights([1.0])),
    }
    del full
    from .serve import combined_router  # routing needs faiss: imported where it is used

    router = combined_router(suite, [(name, exemplars)])
    routed = router.route(extract_features(adapter, list(held.texts), route=True)).routed_task
    routing = Accuracy(int((routed == router.task_names.index(name)).sum()), len(held))
    seconds["evaluate"] = time.monotonic() - start
    seconds["total"] = time.monotonic() - t0
    report("done", 1.0, {})
    return TaughtTask(
        name=name,
        suite=suite.name,
        labels=data.labels,
        templates=templates,
        head=head,
        switches=switches,
        encoded=encoded,
        exemplars=exemplars,
        exemplar_texts=exemplar_texts,
        accuracy=accuracy,
        routing=routing,
        train_lines=len(train),
        steps=len(losses),
        steps_planned=steps,
        losses=losses,
        stopped="steps" if len(losses) >= steps else "time cap",
        seconds=seconds,
        sample_tensor=sample,
        sample_tau=sample_tau,
        num_params=num_params,
    )
