"""Build a suite: data and splits, probe heads, fine-tunes, switches, router, and every result.

:func:`prepare` does the expensive, cacheable part (fine-tuning, cached in the user's cache folder);
:mod:`tswitch.suites.experiments` runs every method and analysis; :func:`write_suite` writes the
folder of ``docs/SUITE.md``. ``demos/build_suite.py`` is the thin command line over this.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..core.task_vector import TaskVector
from ..io import load_state_dict, save_state_dict
from ..models import load_adapter
from ..models.base import Head
from ..models.heads import HeadTask, class_mean_head, head_accuracy, linear_probe_head, zero_shot_head
from .data import apply_split, load_task, make_splits
from .evaluate import EVAL_DENSE_BYTES, EvalSet
from .files import Log
from .manifest import Manifest
from .spec import SuiteSpec
from .stats import annotate
from .train import finetune


def cache_root() -> str:
    """``$XDG_CACHE_HOME/tswitch`` (``~/.cache/tswitch``): fine-tuned checkpoints live here, not in git."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tswitch")


@dataclass
class TaskState:
    name: str
    label_names: tuple[str, ...]
    description: str
    splits: dict[str, list[str]]
    train_inputs: Sequence[Any]
    train_labels: np.ndarray
    head: Head
    finetuned: dict[str, torch.Tensor]
    tau: TaskVector
    val: EvalSet
    test: EvalSet
    test_inputs: Sequence[Any]
    finetune_file: str | None = None  # the fine-tune's path under cache_root(), when this build made or reused it
    head_info: dict = field(default_factory=dict)  # how the frozen head was made (kind, prompts, K, ...)
    finetune_reused: bool = False  # the fine-tune came from the cache (its time is not in this build's)


@dataclass
class Prepared:
    spec: SuiteSpec
    adapter: object
    base: dict[str, torch.Tensor]
    tasks: dict[str, TaskState]

    @property
    def heads(self) -> dict[str, Head]:
        return {t: s.head for t, s in self.tasks.items()}

    def sets(self, split: str) -> dict[str, EvalSet]:
        return {t: getattr(s, split) for t, s in self.tasks.items()}


def _split_sizes(n: int, train: int, val: int, test: int) -> tuple[int, int, int]:
    """Requested sizes, shrunk proportionally when the task has fewer items."""
    want = train + val + test
    if want <= n:
        return train, val, test
    scale = n / want
    return int(train * scale), int(val * scale), int(test * scale)


def _recipe_key(spec: SuiteSpec, task: str, split_ids: list[str]) -> str:
    blob = json.dumps(
        {
            "adapter": spec.adapter,
            "args": spec.adapter_args,
            "recipe": asdict(spec.recipe),
            "task": task,
            "train": split_ids,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def task_state(
    adapter,
    base: dict[str, torch.Tensor],
    name: str,
    data,
    splits: dict[str, list[str]],
    head: Head,
    finetuned: dict[str, torch.Tensor],
    eval_batch: int,
) -> TaskState:
    """One task ready for the experiments: its splits applied and preprocessed, its task vector.

    ``finetuned`` may lack tensors the fine-tune never changed (integer buffers, a frozen projection):
    they are taken from ``base``; the task vector covers the floating tensors only.
    """
    train, val, test = (apply_split(data, splits[s]) for s in ("train", "val", "test"))
    full = {**base, **{k: v for k, v in finetuned.items() if k in base}}
    floating = {k: v for k, v in base.items() if torch.is_floating_point(v)}
    tau = TaskVector.from_state_dicts(floating, full)
    return TaskState(
        name=name,
        label_names=data.label_names,
        description=data.description,
        splits=splits,
        train_inputs=train.inputs,
        train_labels=train.labels,
        head=head,
        finetuned=full,
        tau=tau,
        val=EvalSet.build(adapter, name, val.inputs, val.labels, eval_batch),
        test=EvalSet.build(adapter, name, test.inputs, test.labels, eval_batch),
        test_inputs=test.inputs,
    )


def make_head(adapter, spec: SuiteSpec, ts, label_names, train, val) -> tuple[Head, dict]:
    """The task's frozen head by the recipe (``zero-shot``: the prompt set, names or descriptions,
    chosen by pre-trained accuracy on validation; ``class-mean``: K training inputs per class;
    ``linear-probe``: all training features), and what was chosen, for the manifest."""
    hr = spec.recipe.head
    task = HeadTask(tuple(label_names), train.inputs, np.asarray(train.labels))
    if hr.kind == "zero-shot":
        candidates: list[tuple[tuple[str, ...] | None, tuple[str, ...]]] = [(None, t) for t in hr.templates]
        if ts.descriptions:
            candidates += [(tuple(ts.descriptions), t) for t in hr.templates]
        best = None
        for names, templates in candidates:
            cand = replace(task, descriptions=names)
            head = zero_shot_head(adapter, cand, templates=templates, logit_scale=hr.logit_scale)
            acc = head_accuracy(adapter, head, val.inputs, val.labels, spec.eval_batch)
            if best is None or acc > best[0]:  # ties: the earlier (simpler) candidate
                best = (acc, head, names, templates)
        if best is None:
            raise ValueError(f"{ts.name}: the head recipe lists no prompt templates")
        acc, head, names, templates = best
        info = {
            "kind": "zero-shot",
            "templates": list(templates),
            "descriptions": list(names) if names else None,
            "logit_scale": hr.logit_scale,
            "val_accuracy": acc,
            "candidates": len(candidates),
        }
        return head, info
    if hr.kind == "class-mean":
        head = class_mean_head(adapter, task, shots=hr.shots, logit_scale=hr.logit_scale, seed=spec.recipe.seed)
        return head, {"kind": "class-mean", "shots": hr.shots, "logit_scale": hr.logit_scale, "seed": spec.recipe.seed}
    r = spec.recipe
    head = linear_probe_head(
        adapter, task, steps=r.probe_steps, lr=r.probe_lr, weight_decay=r.probe_weight_decay, seed=r.seed
    )
    return head, {"kind": "linear-probe", "steps": r.probe_steps, "lr": r.probe_lr}


def _selector(adapter, head: Head, val, recipe, batch_size: int, trace: list):
    """``finetune``'s ``select``: score the module on (at most 500 of) the validation items every
    ``recipe.select_every`` steps; ``None`` when the recipe does not select."""
    if recipe.select_every <= 0:
        return None
    inputs, labels = list(val.inputs)[:500], np.asarray(val.labels)[:500]

    def score(module) -> float:
        correct = 0
        with torch.no_grad():
            for start in range(0, len(inputs), batch_size):
                batch = adapter.preprocess(inputs[start : start + batch_size])
                pred = head(adapter.features_of(module, batch).float()).argmax(-1).numpy()
                correct += int((pred == labels[start : start + len(pred)]).sum())
        return correct / max(1, len(labels))

    steps = list(range(recipe.select_every, recipe.steps + 1, recipe.select_every))
    return steps, score, trace


def prepare(spec: SuiteSpec, log: Log = print, progress=None) -> Prepared:
    """Load data, split it, fit each probe head, fine-tune (or reuse the cached fine-tune)."""
    adapter = load_adapter(spec.adapter, **spec.adapter_args)
    base = adapter.state_dict()
    cache = os.path.join(cache_root(), spec.name)
    os.makedirs(cache, exist_ok=True)
    tasks = {}
    for ts in spec.tasks:
        data = load_task(ts.loader, **ts.loader_args)
        sizes = _split_sizes(len(data), ts.train, ts.val, ts.test)
        splits = make_splits(data.ids, data.labels, sizes=sizes, seed=spec.split_seed)
        train = apply_split(data, splits["train"])
        log(f"[{ts.name}] {len(data)} items, {data.num_classes} classes; train/val/test = {sizes}")
        val = apply_split(data, splits["val"])
        head, head_info = make_head(adapter, spec, ts, data.label_names, train, val)
        log(f"[{ts.name}] head: {head_info}")
        r = spec.recipe
        ckpt = os.path.join(cache, f"{ts.name}-{_recipe_key(spec, ts.name, splits['train'])}.safetensors")
        reused = os.path.exists(ckpt)
        if reused:
            log(f"[{ts.name}] reusing cached fine-tune {ckpt}")
            finetuned = load_state_dict(ckpt)
        else:
            bar = progress(total=r.steps, desc=f"fine-tune {ts.name}") if progress else None
            trace: list[tuple[int, float]] = []
            finetuned = finetune(
                adapter,
                head,
                train.inputs,
                train.labels,
                steps=r.steps,
                batch_size=r.batch_size,
                lr=r.lr,
                weight_decay=r.weight_decay,
                train_bn=r.train_bn,
                dropout=r.dropout,
                seed=r.seed,
                select=_selector(adapter, head, val, r, spec.eval_batch, trace),
                progress=(lambda s, loss: (bar.update(1), bar.set_postfix(loss=f"{loss:.3f}"))) if bar else None,  # noqa: B023
            )
            if bar:
                bar.close()
            save_state_dict(finetuned, ckpt)
            if trace:
                log(f"[{ts.name}] validation by step: " + ", ".join(f"{s_}: {a:.3f}" for s_, a in trace))
        tasks[ts.name] = replace(
            task_state(adapter, base, ts.name, data, splits, head, finetuned, spec.eval_batch),
            finetune_file=os.path.relpath(ckpt, cache_root()),
            head_info=head_info,
            finetune_reused=reused,
        )
    return Prepared(spec, adapter, base, tasks)


def run_build(
    spec: SuiteSpec,
    out_dir: str,
    log: Log = print,
    progress=None,
    command: str = "",
    resume: bool = False,
    fresh: bool = False,
) -> dict:
    """The whole build: prepare (fine-tune), then :func:`finish_build`.

    Args:
        resume: keep every finished stage in the cache folder and read back those an earlier run of
            the same build finished (:mod:`tswitch.suites.stages`).
        fresh: with ``resume``, discard the stored stages first.
    """
    import time

    from .stages import StageCache

    t0 = time.time()
    prep = prepare(spec, log, progress)
    stages = None
    if resume:
        stages = StageCache.for_build(
            os.path.join(cache_root(), spec.name), spec, [s.finetune_file for s in prep.tasks.values()]
        )
        if fresh:
            stages.discard()
        log(f"stages: {stages.path} ({len(stages)} finished earlier)")
    return finish_build(prep, out_dir, log, command, started=t0, stages=stages)


def finish_build(
    prep: Prepared,
    out_dir: str,
    log: Log = print,
    command: str = "",
    *,
    started: float | None = None,
    manifest_extra: dict | None = None,
    heads_extra: dict[str, torch.Tensor] | None = None,
    stages=None,
) -> dict:
    """Everything after "we have the base, the fine-tuned states, the heads and the splits".

    Runs every method and analysis, writes the suite into ``out_dir``, checks that T-Switch recomputed
    from the written files equals the build's number, then writes ``results.json``. Shared by the
    offline suites (:func:`run_build`, fine-tuned here) and the real-checkpoint suites
    (:mod:`tswitch.suites.checkpoints`, fine-tunes and zero-shot heads given).

    Args:
        manifest_extra: keys that replace or add to the written ``manifest.json`` (e.g. the real
            checkpoints' ``recipe``, which is not the offline suites' probe + fine-tune).
        heads_extra: tensors added to ``heads.safetensors`` (e.g. a RoBERTa head's hidden layer).
        stages: a :class:`~tswitch.suites.stages.StageCache` (resumable builds) or ``None``.
    """
    import time

    from .experiments import Experiments
    from .suite import Suite
    from .write import write_results, write_suite

    t0 = time.time() if started is None else started
    spec = prep.spec
    t_prep = time.time() - t0
    exps = Experiments(prep, log, stages=stages)
    log("baselines ...")
    methods = exps.baselines()
    log("T-Switch / Auto-Switch alpha grid ...")
    grid = exps.switch_grid()
    choice = exps.choose_switch(grid)
    log(f"chosen on validation: {choice['dense_option']}, alpha {choice['alpha']:g}, k {choice['k']}")
    log("pulse experiment, P-Discard vs DARE ...")
    pulse = exps.pulse()
    pspar_dare = exps.pspar_vs_dare()
    option, alpha = choice["dense_option"], f"{choice['alpha']:g}"
    bapprox = {
        t: {
            name: {a: pulse[cond][a]["per_task"][t] for a in pulse[cond]}
            for name, cond in (("b-approx", "b_approx"), ("p-spar", "keep_high"))
        }
        for t in prep.tasks
    }
    results = {
        "suite": spec.name,
        "split": "test",
        "tasks": list(prep.tasks),
        "metric": "accuracy",
        "methods": methods,
        "choice": {k: v for k, v in choice.items() if k != "pack"},
        "alpha_grid": grid,
        "pulse": pulse,
        "pspar_vs_dare": pspar_dare,
        "analysis_limit": spec.analysis_limit,  # test items per task of pulse / pspar_vs_dare (None: all)
        "bapprox_vs_pspar": bapprox,
        "num_params": exps.n,
    }
    write_suite(prep, exps, choice, results, out_dir)
    if manifest_extra or heads_extra:
        _amend_suite(out_dir, manifest_extra or {}, heads_extra or {})
    # the committed files are the source of truth for switch-based numbers: recompute from them
    # same backbone object, no second load
    suite = Suite(out_dir, adapter=prep.adapter, dense_bytes=EVAL_DENSE_BYTES)
    for method in ("t-switch", "auto-switch"):
        res = suite.evaluate(method, "test")
        res["hyper"] = {"alpha": choice["alpha"], "dense_option": option, "k": choice["k"]}
        results["methods"][method] = res
    expected = grid[option][alpha]["t-switch"]["test"]["average"]
    if abs(results["methods"]["t-switch"]["average"] - expected) > 1e-9:
        raise RuntimeError(
            f"T-Switch from the written suite ({results['methods']['t-switch']['average']}) "
            f"differs from the build's ({expected})"
        )
    results["provenance"] = {
        "command": command,
        "seconds": round(time.time() - t0, 1),
        "prepare_seconds": round(t_prep, 1),
        # fine-tunes read from the cache instead of trained by this run (their time is not in seconds)
        "finetunes_reused": sum(t.finetune_reused for t in prep.tasks.values()),
        "tswitch_version": __version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        # stages read back from an earlier, interrupted run of this build (their time is not in seconds)
        "resumed_stages": 0 if stages is None else stages.hits,
        # compute seconds of every stage, whichever run computed it (None: times not kept for all)
        "stage_seconds": None if stages is None else stages.seconds(),
    }
    # 95% intervals (Wilson per task, bootstrap for the average), normalized accuracy, gain retained
    results = annotate(results, {t: len(state.test.labels) for t, state in prep.tasks.items()})
    write_results(out_dir, results)  # the other files are already written and verified
    return results


def _amend_suite(out_dir: str, manifest_extra: dict, heads_extra: dict[str, torch.Tensor]) -> None:
    """Rewrite ``manifest.json`` with ``manifest_extra`` merged in, and add ``heads_extra`` tensors."""
    manifest = Manifest.load(out_dir)
    manifest = Manifest.from_dict({**manifest.to_dict(), **manifest_extra})
    manifest.save(out_dir)
    if heads_extra:
        heads_path = os.path.join(out_dir, manifest.heads)
        save_state_dict({**load_state_dict(heads_path), **heads_extra}, heads_path)
