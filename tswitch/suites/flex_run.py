"""FlexSwitch and Auto-FlexSwitch over a built suite: what ``python -m tswitch flex`` runs.

The method lives in :mod:`tswitch.flex`; this module is the suite-side orchestration. For a suite
folder (docs/SUITE.md) it

1. takes each task's fine-tuned checkpoint from the builder's cache, as the manifest records it
   (:func:`locate_finetuned`), and rebuilds ``tau_k = theta_k - theta_0``;
2. takes the first ``N`` of the task's Auto-Switch exemplars, as the manifest records them
   (:func:`exemplar_inputs`);
3. learns each task's FlexSwitch (:func:`tswitch.flex.train.train_flex`) and writes every task into
   ``flex-<loss>.tsw`` in the suite folder (:func:`run_stem` names the ablations' files);
4. fits the Auto-FlexSwitch router on the exemplars' routing features and writes
   ``router-flex.safetensors`` (FlexSwitch runs only: the Tab. XI ablations leave it as it is);
5. optionally evaluates both on a split, and writes ``flex-<loss>.json`` (settings, per-task time,
   per-module density / width / scale, bytes, accuracies).

The suite's own files are not modified.
"""

from __future__ import annotations

import json
import math
import os
import re
import time

import torch

from ..codec.container import atomic_write_bytes
from ..flex.losses import get_loss
from ..flex.storage import encode_flex_task, storage_breakdown
from ..flex.train import FlexConfig, train_flex
from ..io import file_sha256
from .files import FLEX_ROUTER_FILE, Log


class FlexRunError(ValueError):
    """A suite lacks what FlexSwitch training needs (one line, for the CLI)."""


def run_stem(config: FlexConfig) -> str:
    """File stem of a run's outputs: ``flex-<loss>`` for FlexSwitch, ``flex-lgs-<loss>`` and
    ``flex-bas<alpha>-<loss>`` for the Tab. XI ablations; a weight ``lambda`` other than the loss's
    Tab. III value adds ``-lam<lambda>`` (``flex-kl-lam0.1``), so a lambda sweep keeps every run."""
    mode = {"lgs+bas": "", "lgs": "lgs-", "bas": f"bas{config.alpha:g}-"}[config.mode]
    lam = config.lam_value
    default = get_loss(config.loss).default_lambda
    suffix = "" if math.isclose(lam, default) else f"-lam{lam:g}"
    return f"flex-{mode}{config.loss}{suffix}"


def _rebuild(suite) -> FlexRunError:
    return FlexRunError(
        f"suite {suite.name} does not record its fine-tunes and exemplars (built before tswitch 0.2.0); "
        f"rebuild it with demos/build_suite.py --suite {suite.name}"
    )


def locate_finetuned(suite) -> dict[str, str]:
    """The cached fine-tuned checkpoint of every task of ``suite``: the builder records each one's
    path under the fine-tune cache (:func:`tswitch.suites.build.cache_root`) in ``manifest.finetunes``.

    Raises:
        FlexRunError: the manifest records none, or a checkpoint is missing (names the first).
    """
    from .build import cache_root

    recorded = suite.manifest.finetunes
    if not recorded or set(recorded) != set(suite.task_names):
        raise _rebuild(suite)
    paths = {task: os.path.join(cache_root(), recorded[task]) for task in suite.task_names}
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
        raise FlexRunError(
            f"no cached fine-tune for {len(missing)} task(s) of suite {suite.name}, e.g. {missing[0]}; "
            f"rebuild it with demos/build_suite.py --suite {suite.name}"
        )
    return paths


def exemplar_inputs(suite, n: int) -> dict[str, list]:
    """The first ``n`` Auto-Switch exemplars of each task (train ids in ``manifest.exemplar_ids``)."""
    from .data import apply_split, load_task

    recorded = suite.manifest.exemplar_ids
    if not recorded or set(recorded) != set(suite.task_names):
        raise _rebuild(suite)
    out = {}
    for t in suite.manifest.tasks:
        ids = recorded[t.name]
        if n > len(ids):
            raise FlexRunError(f"suite {suite.name} records {len(ids)} exemplars of {t.name}, fewer than {n}")
        out[t.name] = list(apply_split(load_task(t.loader["name"], **t.loader.get("args", {})), ids[:n]).inputs)
    return out


def _part_key(suite, task: str, config: FlexConfig, exemplars: int, checkpoint: str) -> str:
    """What a cached per-task result depends on: the settings, the fine-tune (its cache name holds
    its recipe's hash), the exemplars, the frozen head and the dense pattern. 16 hex digits."""
    import hashlib

    h = hashlib.sha256()
    ids = (suite.manifest.exemplar_ids or {}).get(task, [])[:exemplars]
    meta = {
        "config": config.to_dict(),
        "exemplars": list(ids),
        "finetune": os.path.basename(checkpoint),
        "dense_pattern": suite.manifest.dense_pattern,
    }
    h.update(json.dumps(meta, sort_keys=True).encode())
    head = suite.heads[task]
    for t in (head.weight, head.bias, head.dense_weight, head.dense_bias):
        if t is not None:
            h.update(t.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def part_path(suite, task: str, config: FlexConfig, exemplars: int, checkpoint: str) -> str:
    """Where one task's finished FlexSwitch run is kept between runs: a one-task pack and its report
    entry under the fine-tune cache (``<cache>/<suite>/flex/``), never in the suite folder."""
    from .build import cache_root

    key = _part_key(suite, task, config, exemplars, checkpoint)
    return os.path.join(cache_root(), suite.name, "flex", f"{run_stem(config)}-{task}-{key}.tsw")


def _save_part(path: str, floating: dict[str, torch.Tensor], enc, entry: dict) -> None:
    from ..pack import create_pack

    os.makedirs(os.path.dirname(path), exist_ok=True)
    create_pack(path, floating, [enc])  # atomic
    atomic_write_bytes(path[: -len(".tsw")] + ".json", (json.dumps(entry) + "\n").encode())


def _load_part(path: str, floating: dict[str, torch.Tensor], task: str):
    """``(EncodedTask, report entry)`` of a finished task, or ``None`` when absent or unreadable
    (then the task is trained again; a corrupt part is never used: its checksum is verified)."""
    from ..codec.header import PackError
    from ..pack import SwitchPack

    report = path[: -len(".tsw")] + ".json"
    if not (os.path.isfile(path) and os.path.isfile(report)):
        return None
    try:
        pack = SwitchPack(path)
        pack.check_base(floating)
        encoded = pack.encoded(task)
        with open(report) as f:
            entry = json.load(f)
    except (PackError, OSError, ValueError, KeyError):
        return None
    return encoded, entry


def task_vector(base: dict[str, torch.Tensor], checkpoint: str) -> dict[str, torch.Tensor]:
    """``theta_k - theta_0`` over the base model's floating tensors (float32)."""
    from ..core.task_vector import TaskVector
    from ..io import load_state_dict

    finetuned = load_state_dict(checkpoint)
    floating = {k: v for k, v in base.items() if torch.is_floating_point(v)}
    return dict(
        TaskVector.from_state_dicts(floating, {**base, **{k: v for k, v in finetuned.items() if k in base}}).items()
    )


def run_flex(
    suite,
    config: FlexConfig,
    router_config=None,
    exemplars: int = 100,
    tasks: list[str] | None = None,
    eval_split: str | None = "test",
    eval_limit: int | None = None,
    log: Log = print,
    progress=None,
    resume: bool = True,
) -> dict:
    """Train FlexSwitch for every task (or ``tasks``) of ``suite``; write the pack, router and report.

    Args:
        suite: a :class:`tswitch.suites.suite.Suite`.
        config: the FlexSwitch settings.
        router_config: :class:`tswitch.routing.low_rank.AutoFlexConfig` (default: the journal's, with
            the suite's ``k``); the router is fitted only when every task is trained, in ``lgs+bas``
            mode (FlexSwitch; the ``lgs`` / ``bas`` ablations are routed by k-NN).
        exemplars: ``N`` per task.
        tasks: a subset of the suite's tasks (the pack then holds only those; no router).
        eval_split: ``"val"``/``"test"`` to evaluate, ``None`` to skip.
        eval_limit: first examples per task when evaluating.
        log: one line at a time.
        progress: a ``tqdm``-like factory ``progress(total=, desc=)``.
        resume: reuse each task's finished run kept under the cache (:func:`part_path`) when its
            settings, fine-tune, exemplars and head are the same. A run stopped part-way resumes at
            the next task, and runs over disjoint ``tasks`` (two processes on two cores) followed by
            one over all tasks train each task once.

    Returns:
        The report written to ``<stem>.json`` beside the pack ``<stem>.tsw`` (:func:`run_stem`).
    """
    from ..pack import SwitchPack, create_pack, tensor_specs
    from ..routing.low_rank import AutoFlexConfig

    names = list(suite.task_names) if tasks is None else list(tasks)
    unknown = [t for t in names if t not in suite.task_names]
    if unknown:
        raise FlexRunError(f"unknown task(s) {unknown}; suite {suite.name} has: {', '.join(suite.task_names)}")
    checkpoints = locate_finetuned(suite)  # fail before any heavy work
    adapter, heads = suite.adapter, suite.heads
    base = adapter.state_dict()
    floating = {k: v for k, v in base.items() if torch.is_floating_point(v)}
    specs = tensor_specs(floating)
    inputs = exemplar_inputs(suite, exemplars)
    report = {
        "suite": suite.name,
        "config": config.to_dict(),
        "exemplars_per_task": exemplars,
        "dense_pattern": suite.manifest.dense_pattern,
        "threads": torch.get_num_threads(),
        "tasks": {},
    }
    encoded = []
    dense_pattern = suite.manifest.dense_pattern
    dense_re = re.compile(dense_pattern) if dense_pattern else None
    for task in names:
        part = part_path(suite, task, config, exemplars, checkpoints[task])
        cached = _load_part(part, floating, task) if resume else None
        if cached is not None:  # finished by an earlier (or a parallel) run with the same inputs
            encoded.append(cached[0])
            report["tasks"][task] = {**cached[1], "cached": True}
            log(f"[{task}] reusing the finished run {part}")
            continue
        tau = task_vector(base, checkpoints[task])
        # tensors the suite stores dense (A17) are not learned: they sit at theta_0 + tau throughout
        learned = {k: v for k, v in tau.items() if dense_re is None or not dense_re.search(k)}
        start = {**base, **{k: base[k] + v.to(base[k].dtype) for k, v in tau.items() if k not in learned}}
        bar = progress(total=config.steps, desc=f"flex {task}") if progress else None

        def tick(step, stats, bar=bar):
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{stats['loss']:.4f}", per=f"{stats['per']:.4f}", bits=f"{stats.get('mixed_bits', 0):.2f}"
                )

        result = train_flex(adapter, start, learned, heads[task], inputs[task], config, task=task, progress=tick)
        if bar is not None:
            bar.close()
        enc = encode_flex_task(result, tau, specs, labels=heads[task].labels, dense_pattern=dense_pattern)
        encoded.append(enc)
        report["tasks"][task] = {
            "seconds": round(result.seconds, 2),
            "seconds_per_step": result.seconds_per_step,
            "teacher_seconds": round(result.teacher_seconds, 2),
            "density": result.density,
            "mean_bits": result.mean_bits,
            "storage": storage_breakdown(enc.entry, specs),
            "modules": result.modules(),
            "history": result.history,
        }
        _save_part(part, floating, enc, report["tasks"][task])
        log(
            f"[{task}] density {result.density:.4f}, mean bits {result.mean_bits or 1:.2f}, "
            f"{enc.entry.total_bytes:,} B, {result.seconds:.0f} s ({result.seconds_per_step:.2f} s/step)"
        )
    stem = run_stem(config)
    path = suite.file(f"{stem}.tsw")
    create_pack(path, floating, encoded)
    report["pack"] = {"file": f"{stem}.tsw", "bytes": sum(e.entry.total_bytes for e in encoded)}
    if os.path.isfile(suite.file(suite.manifest.pack)):
        tswitch = SwitchPack(suite.file(suite.manifest.pack))
        report["t-switch"] = {
            "alpha": suite.manifest.alpha,
            "bytes": sum(tswitch.task(t).total_bytes for t in names if t in tswitch.tasks),
        }
    router = None
    if tasks is None and config.mode == "lgs+bas":  # the Tab. XI ablations route by k-NN, not by this
        rc = router_config or AutoFlexConfig(k=suite.manifest.router.k)
        router, router_report = _fit_router(suite, adapter, inputs, rc, log)
        router.save(suite.file(FLEX_ROUTER_FILE))
        report["router"] = {
            "file": FLEX_ROUTER_FILE,
            "sha256": "sha256:" + file_sha256(suite.file(FLEX_ROUTER_FILE)),  # what its own evaluation used
            "bytes": router.nbytes,
            "macs_per_query": router.macs_per_query(),
            **router_report,
        }
    if eval_split:
        report["eval"] = _evaluate(suite, path, router, names, eval_split, eval_limit, log)
    atomic_write_bytes(suite.file(f"{stem}.json"), (json.dumps(report, indent=1) + "\n").encode())
    return report


def _fit_router(suite, adapter, inputs: dict[str, list], config, log: Log):
    from ..routing.low_rank import LowRankRouter
    from .train import extract_features

    feats, ids = [], []
    for i, task in enumerate(suite.task_names):
        feats.append(extract_features(adapter, inputs[task], route=True, batch_size=suite.manifest.eval_batch))
        ids += [i] * len(inputs[task])
    t0 = time.perf_counter()
    router, report = LowRankRouter.fit(torch.cat(feats), torch.tensor(ids), suite.task_names, config)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    log(f"[auto-flexswitch] {router}; Eq. 19 loss {report['loss'][0]:.4f} -> {report['loss'][-1]:.4f}")
    return router, report


def _evaluate(suite, path: str, router, names: list[str], split: str, limit: int | None, log: Log) -> dict:
    """The run's pack under oracle task ids and, given ``router``, routed by it: the evaluation
    :func:`tswitch.suites.flex_results.evaluate_run` makes (``--collect`` reuses it)."""
    from .flex_results import evaluate_run

    sets = suite.eval_sets(split, limit)
    stem = os.path.basename(path)[: -len(".tsw")]
    done = evaluate_run(suite, stem, sets, {"low_rank": router}, log)
    out = {"split": split, "limit": limit, "flexswitch": done["flexswitch"]}
    if "low_rank" in done:
        out["auto-flexswitch"] = done["low_rank"]
    return out


def summary_lines(report: dict) -> list[str]:
    """The CLI's closing table: per task density, width, bytes, time; totals against T-Switch."""
    lines = [f"{'task':<22}{'density':>9}{'bits':>6}{'bytes':>12}{'s/step':>8}{'acc':>8}"]
    acc = report.get("eval", {}).get("flexswitch", {}).get("per_task", {})
    for task, r in report["tasks"].items():
        lines.append(
            f"{task:<22}{r['density']:>9.4f}{(r['mean_bits'] or 1):>6.2f}{r['storage']['total_bytes']:>12,}"
            f"{r['seconds_per_step']:>8.2f}" + (f"{acc[task]:>8.4f}" if task in acc else f"{'-':>8}")
        )
    total = report["pack"]["bytes"]
    line = f"FlexSwitch pack {total:,} B ({report['pack']['file']})"
    if report.get("t-switch") and report["t-switch"]["bytes"]:
        line += f" = {100 * total / report['t-switch']['bytes']:.1f}% of T-Switch (alpha {report['t-switch']['alpha']})"
    lines.append(line)
    if "router" in report:
        lines.append(
            f"Auto-FlexSwitch router {report['router']['bytes']:,} B ({report['router']['file']}), "
            f"{report['router']['macs_per_query']:,} MACs per query"
        )
    ev = report.get("eval")
    if ev:
        lines.append(
            f"{ev['split']}: FlexSwitch {ev['flexswitch']['average']:.4f}"
            + (
                f", Auto-FlexSwitch {ev['auto-flexswitch']['average']:.4f} (routing "
                f"{ev['auto-flexswitch']['routing_accuracy']:.4f})"
                if "auto-flexswitch" in ev
                else ""
            )
        )
    return lines
