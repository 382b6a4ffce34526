"""FlexSwitch runs of a suite gathered into its ``results.json`` and ``manifest.json``.

``python -m tswitch flex`` leaves one ``flex-*.tsw`` / ``flex-*.json`` pair per run in the suite
folder (:func:`tswitch.suites.flex_run.run_stem`). :func:`collect` evaluates every run on one split with the
same evaluators as the other methods (:mod:`tswitch.suites.evaluate`):

- ``flexswitch``: each task under its own learned switch (oracle task id, like T-Switch Eq. 7);
- ``knn``: routed by the suite's Auto-Switch router (Eq. 5 over the exemplars) — the "+ LGS",
  "+ BAS" and "+ LGS + BAS" rows of the journal's Tab. XI;
- ``low_rank``: routed by the Auto-FlexSwitch router (Eq. 18-19) — Tab. XI's last row;

and :func:`build_block` assembles the ``flex`` block of ``results.json`` (runs, Tab. XI ablation,
storage against T-Switch at alpha 0.7, routing cost, per-module density and bit-width of the main
run). :func:`write` stores it, adds ``flexswitch`` / ``auto-flexswitch`` to the methods table and
names the main pack and router in the manifest (``Manifest.flex``), which is what makes the app
and :class:`tswitch.suites.suite.Suite` serve Auto-FlexSwitch.

Evaluating a text run takes minutes, and a collect evaluates every run in the folder. So each run's
entry records the SHA-256 of the files its evaluations read, and the next collect on the same split
reuses an evaluation whose files are all unchanged instead of recomputing it
(:mod:`tswitch.suites.flex_reuse`); ``python -m tswitch flex --collect --no-resume`` evaluates
everything again.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any

from .. import __version__
from .files import FLEX_MAIN_STEM, FLEX_ROUTER_FILE, Log, write_json
from .flex_lambda import tswitch_row
from .flex_reuse import evaluation_inputs, recorded_inputs, reusable, suite_inputs
from .manifest import FlexRef, RouterRef
from .stats import annotate, test_sizes

MAIN_STEM = FLEX_MAIN_STEM
REFERENCE_ALPHA = "0.7"  # the journal compares FlexSwitch with T-Switch at alpha 0.7 (its Tab. III)
ABLATION = (  # Tab. XI rows: (label, run stem prefix or None for Auto-Switch, router)
    ("Auto-Switch", None, "knn"),
    ("+ LGS", "flex-lgs-", "knn"),
    ("+ BAS", "flex-bas", "knn"),
    ("+ LGS + BAS", "flex-", "knn"),
    ("Auto-FlexSwitch (+ low-rank router)", "flex-", "low_rank"),
)


def run_reports(path: str) -> dict[str, dict]:
    """Stem -> report of every finished run in the suite folder (a ``.json`` with its ``.tsw``)."""
    out = {}
    for report in sorted(glob.glob(os.path.join(path, "flex-*.json"))):
        stem = os.path.basename(report)[: -len(".json")]
        if os.path.isfile(os.path.join(path, f"{stem}.tsw")):
            with open(report, encoding="utf-8") as f:
                out[stem] = json.load(f)
    return out


def _main_loss(runs: dict[str, dict], main: str) -> str:
    """The loss of the served run (``kl`` without one)."""
    return str(runs.get(main, {}).get("config", {}).get("loss", "kl"))


def ablation_loss(runs: dict[str, dict], main: str) -> str:
    """The loss of the Tab. XI rows: the served run's when its ablation runs (``flex-lgs-<loss>``,
    ``flex-bas<alpha>-<loss>``) exist, else the first of KL, MSE, CKA that has them, else the served
    run's. The ablation is a study at one loss; the served run may be another loss that validation
    chose (docs/FLEXSWITCH.md A16), and it must not empty the table."""
    served = _main_loss(runs, main)

    def has_ablation(loss: str) -> bool:
        return any(_ablation_stem(p, loss, runs) for p in ("flex-lgs-", "flex-bas"))

    for loss in (served, "kl", "mse", "cka"):
        if has_ablation(loss):
            return loss
    return served


def _ablation_stem(prefix: str, loss: str, runs: dict[str, dict]) -> str | None:
    """The run of a Tab. XI row for ``loss`` (``flex-bas<alpha>-<loss>`` takes any alpha, 0.7 first)."""
    if prefix == "flex-":
        stem = f"flex-{loss}"
        return stem if stem in runs else None
    if prefix == "flex-bas":
        found = sorted(
            (s for s in runs if s.startswith("flex-bas") and s.endswith(f"-{loss}")),
            key=lambda s: s != f"flex-bas0.7-{loss}",
        )
        return found[0] if found else None
    stem = f"{prefix}{loss}"
    return stem if stem in runs else None


def evaluate_run(suite, stem: str, sets, routers: dict, log: Log = print, known: dict | None = None) -> dict:
    """One run's pack under the oracle task id and under each router of ``routers``
    (``{"knn": KNNRouter, "low_rank": LowRankRouter}``; ``None`` values are skipped).

    ``known``: evaluations already made on the same split and examples by the same evaluators
    (``python -m tswitch flex`` evaluates its run: ``{"flexswitch": ..., "low_rank": ...}``); they
    are reused instead of recomputed."""
    known = {k: v for k, v in (known or {}).items() if v is not None}
    from ..merging import AutoSwitch, DynamicMergeEngine, PackedSwitches
    from ..pack import SwitchPack
    from .evaluate import EVAL_DENSE_BYTES, evaluate_routed, evaluate_tswitch, switch_bytes

    pack = SwitchPack(suite.file(f"{stem}.tsw"))
    pack.check_base(suite.adapter.state_dict())
    names = [t.name for t in pack.header.tasks]
    heads = {t: suite.heads[t] for t in names}
    engine = DynamicMergeEngine(
        suite.adapter,
        suite.adapter.state_dict(),
        PackedSwitches.from_pack(pack),
        heads,
        cache_size=len(names) + 1,
        strategy="auto",
        dense_bytes=EVAL_DENSE_BYTES,
    )
    # each task under its own switch (one-hot weights), as T-Switch Eq. 7 is evaluated
    oracle = known.get("flexswitch") or evaluate_tswitch(engine, {t: sets[t] for t in names}, pack.header)
    out: dict[str, Any] = {
        "bytes": switch_bytes(pack.header),
        "flexswitch": {k: oracle[k] for k in ("per_task", "average")},
    }
    again = " (reused)" if "flexswitch" in known else ""
    log(f"[{stem}] FlexSwitch {out['flexswitch']['average']:.4f}, {out['bytes']:,} B{again}")
    if set(names) == set(suite.task_names):
        for key, router in routers.items():
            if router is not None:
                out[key] = known.get(key) or evaluate_routed(AutoSwitch(engine, router), heads, sets, router.k)
                again = " (reused)" if key in known else ""
                log(
                    f"[{stem}] routed ({key}) {out[key]['average']:.4f}, "
                    f"routing {out[key]['routing_accuracy']:.4f}{again}"
                )
    return out


def _run_entry(report: dict, evaluated: dict) -> dict:
    cfg = report["config"]
    tasks = report["tasks"]
    return {
        "mode": cfg["mode"],
        "loss": cfg["loss"],
        "lambda": cfg["lam"],
        "steps": cfg["steps"],
        "alpha": cfg["alpha"] if cfg["mode"] == "bas" else None,
        "exemplars": report.get("exemplars_per_task"),
        "threads": report.get("threads"),
        "bytes": evaluated["bytes"],
        "eq16_bytes": sum(t["storage"]["eq16_bytes"] for t in tasks.values()),
        "dense_bytes": sum(t["storage"].get("dense_bytes", 0) for t in tasks.values()),
        "seconds": {t: r["seconds"] for t, r in tasks.items()},
        "seconds_per_step": {t: r["seconds_per_step"] for t, r in tasks.items()},
        "density": {t: r["density"] for t, r in tasks.items()},
        "mean_bits": {t: r["mean_bits"] for t, r in tasks.items()},
        **{k: v for k, v in evaluated.items() if k != "bytes"},
    }


def build_block(
    suite,
    runs: dict[str, dict],
    evaluated: dict[str, dict],
    split: str,
    main: str = MAIN_STEM,
    router_report: dict | None = None,
    limit: int | None = None,
) -> dict:
    """The ``flex`` block of ``results.json`` from the runs' reports and their evaluations (made on
    the first ``limit`` items per task of ``split``, all of them when ``None``)."""
    results = suite.results()
    entries = {stem: _run_entry(runs[stem], evaluated[stem]) for stem in evaluated}
    option = results.get("choice", {}).get("dense_option")
    ref = tswitch_row(results, float(REFERENCE_ALPHA), split)
    reference = (
        {
            "alpha": float(REFERENCE_ALPHA),
            "dense_option": option,
            "bytes": ref["extra_bytes"],
            "average": ref["average"],
        }
        if ref
        else None
    )
    auto = results["methods"].get("auto-switch", {})
    knn_bytes = auto.get("extra_bytes", 0) - results["methods"].get("t-switch", {}).get("extra_bytes", 0)
    knn = suite.router
    routing = {
        "knn": {
            "bytes": int(knn_bytes),
            "entries": knn.num_exemplars,
            "dim": knn.dim,
            "macs_per_query": int(knn.num_exemplars * knn.dim),
        }
    }
    if router_report is not None:
        routing["low_rank"] = router_report
    loss = ablation_loss(runs, main)
    ablation = []
    for label, prefix, router in ABLATION:
        if prefix is None:
            if auto and results.get("split", "test") == split:  # results.json's Auto-Switch is on its split only
                ablation.append(
                    {
                        "row": label,
                        "run": None,
                        "router": "knn",
                        "average": auto["average"],
                        "routing_accuracy": auto.get("routing_accuracy"),
                        "switch_bytes": results["methods"]["t-switch"]["extra_bytes"],
                        "router_bytes": routing["knn"]["bytes"],
                    }
                )
            continue
        stem = _ablation_stem(prefix, loss, entries)
        if stem is None or router not in entries[stem]:
            continue
        ablation.append(
            {
                "row": label,
                "run": stem,
                "router": router,
                "average": entries[stem][router]["average"],
                "routing_accuracy": entries[stem][router]["routing_accuracy"],
                "switch_bytes": entries[stem]["bytes"],
                "router_bytes": routing.get(router, {}).get("bytes"),
            }
        )
    block = {
        "tswitch_version": __version__,  # the version that evaluated the runs and wrote this block
        "split": split,
        "limit": limit,
        "main": main if main in entries else None,
        "runs": entries,
        "ablation": ablation,
        "ablation_loss": loss,
        "reference_tswitch": reference,
        "routing": routing,
    }
    if main in runs:
        block["modules"] = {
            t: [{k: m[k] for k in ("name", "numel", "density", "bits", "scale")} for m in r["modules"]]
            for t, r in runs[main]["tasks"].items()
        }
        if reference:
            block["bytes_vs_reference"] = entries[main]["bytes"] / reference["bytes"] if main in entries else None
    return block


def collect(
    suite,
    split: str = "test",
    main: str = MAIN_STEM,
    limit: int | None = None,
    log: Log = print,
    previous: dict | None = None,
    modes: tuple[str, ...] | None = None,
) -> dict:
    """Evaluate every run in the suite folder and return the ``flex`` block (:func:`build_block`).

    The main run (``flex-kl`` by default; the stem validation picked,
    :func:`tswitch.suites.flex_lambda.choose_lambda`, e.g. ``flex-kl-lam0.9``) and the Tab. XI run
    (:func:`ablation_loss` at its own lambda) are also routed by the Auto-FlexSwitch router
    ``router-flex.safetensors`` when the folder has it.

    Args:
        previous: a ``flex`` block an earlier collect wrote on ``split``
            (:func:`tswitch.suites.flex_reuse.previous_block`);
            an evaluation of it whose input files are unchanged is reused
            (:func:`tswitch.suites.flex_reuse.reusable`).
        modes: evaluate only the runs of these modes (``("lgs+bas",)``: the runs λ is chosen among
            on validation; the Tab. XI ablations are rows of the test block only).
    """
    from ..routing.low_rank import LowRankRouter

    runs = run_reports(suite.path)
    if not runs:
        raise FileNotFoundError(
            f"no FlexSwitch runs (flex-*.json + .tsw) in {suite.path}; "
            f"run python -m tswitch flex --suite {suite.name} first"
        )
    if modes is not None:
        runs = {s: r for s, r in runs.items() if r.get("config", {}).get("mode") in modes}
    low_rank = (
        LowRankRouter.load(suite.file(FLEX_ROUTER_FILE)) if os.path.isfile(suite.file(FLEX_ROUTER_FILE)) else None
    )
    sets = suite.eval_sets(split, limit)
    # the low-rank router routes the served run and the Tab. XI "+ LGS + BAS" run (flex-<loss> at the
    # ablation loss's own lambda), which differ when validation chose another lambda or loss
    routed_low_rank = {main, f"flex-{ablation_loss(runs, main)}"}
    evaluated = {}
    shared = suite_inputs(suite)
    for stem, report in runs.items():
        routers = {"knn": suite.router, "low_rank": low_rank if stem in routed_low_rank else None}
        inputs = evaluation_inputs(suite, stem, shared)
        done = report.get("eval") or {}
        known = reusable(previous, stem, inputs, limit)
        if done.get("split") == split and done.get("limit") == limit and limit is None:
            # the training command's own evaluation; its low-rank number only while the router file
            # is the one that command fitted (a later run without --task fits it again)
            known.setdefault("flexswitch", done.get("flexswitch"))
            fitted = (report.get("router") or {}).get("sha256")
            if fitted is not None and fitted == inputs["router_flex"]:
                known.setdefault("low_rank", done.get("auto-flexswitch"))
        evaluated[stem] = evaluate_run(suite, stem, sets, routers, log, known)
        evaluated[stem]["inputs"] = recorded_inputs(inputs, evaluated[stem])
    router_report = None
    if low_rank is not None:
        fitted = runs.get(main, {}).get("router", {})
        router_report = {
            "file": FLEX_ROUTER_FILE,
            "bytes": low_rank.nbytes,
            "rank": low_rank.rank,
            "entries": low_rank.num_exemplars,
            "dim": low_rank.dim,
            "macs_per_query": int(low_rank.macs_per_query()),
            "fit_seconds": fitted.get("seconds"),
            "eq19_loss": [fitted["loss"][0], fitted["loss"][-1]] if fitted.get("loss") else None,
        }
    return build_block(suite, runs, evaluated, split, main, router_report, limit)


def write(suite, block: dict) -> None:
    """Store ``block`` as ``results.json["flex"]``, add the main run as the ``flexswitch`` and
    ``auto-flexswitch`` methods, and name its pack and router in the manifest (``Manifest.flex``)
    (both files rewritten atomically)."""
    results = suite.results()
    results["flex"] = block
    main = block.get("main")
    methods = {k: v for k, v in results["methods"].items() if k not in ("flexswitch", "auto-flexswitch")}
    flex = None
    if main:
        run = block["runs"][main]
        methods["flexswitch"] = {
            **run["flexswitch"],
            "extra_bytes": run["bytes"],
            "hyper": {"loss": run["loss"], "lambda": run["lambda"], "steps": run["steps"]},
        }
        if "low_rank" in run:
            from ..routing.low_rank import LowRankRouter

            k = LowRankRouter.load(suite.file(FLEX_ROUTER_FILE)).k
            methods["auto-flexswitch"] = {
                **run["low_rank"],
                "extra_bytes": run["bytes"] + block["routing"]["low_rank"]["bytes"],
                "hyper": {"k": k},
            }
            flex = FlexRef(f"{main}.tsw", RouterRef(FLEX_ROUTER_FILE, k))
    results["methods"] = methods
    results = annotate(results, test_sizes(suite.manifest)) if test_sizes(suite.manifest) else results
    write_json(suite.file("results.json"), results)
    manifest = suite.manifest.with_flex(flex)
    manifest.save(suite.path)
    suite.manifest = manifest
