"""The ``flex`` block of a suite's ``results.json`` as text: the CLI's summary and the Markdown the
app's *Compare* view and the README show (the block itself: :mod:`tswitch.suites.flex_results`)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping

from .stats import intervals

# what the loss column adds for a Tab. XI ablation run (``mode``); the full FlexSwitch adds nothing
_MODE_NOTE = {"lgs": ", LGS only (1 bit)", "bas": ", BAS on P-Spar α {alpha:g}"}


def summary_lines(block: dict) -> list[str]:
    """The collected runs and the Tab. XI ablation as text (``python -m tswitch flex --collect``)."""
    lines = [
        f"{'run':<24}{'FlexSwitch':>11}{'routed':>8}{'routing':>9}{'bytes':>13}",
    ]
    for stem, run in block["runs"].items():
        routed = run.get("knn") or {}
        lines.append(
            f"{stem:<24}{run['flexswitch']['average']:>11.4f}"
            + (f"{routed['average']:>8.4f}{routed['routing_accuracy']:>9.4f}" if routed else f"{'-':>8}{'-':>9}")
            + f"{run['bytes']:>13,}"
        )
    ref = block.get("reference_tswitch")
    if ref and block.get("bytes_vs_reference") is not None:
        lines.append(
            f"{block['main']}: {100 * block['bytes_vs_reference']:.1f}% of T-Switch's bytes at alpha "
            f"{ref['alpha']:g} ({ref['bytes']:,} B, average {ref['average']:.4f})"
        )
    if block["ablation"]:
        loss = f", {block['ablation_loss']}" if block.get("ablation_loss") else ""
        lines.append("Tab. XI ablation (" + block["split"] + loss + "):")
        for row in block["ablation"]:
            lines.append(
                f"  {row['row']:<40}{row['average']:.4f}  routing {row['routing_accuracy']:.4f}  "
                f"{row['switch_bytes']:,} B + router {row['router_bytes'] or 0:,} B"
            )
    return lines


def choice_lines(choice: dict) -> list[str]:
    """The lambda chosen on validation per loss and across losses (:func:`flex_lambda.choose_lambda`)."""
    lo, hi = choice["reference"]["average_ci"]
    lines = [
        f"T-Switch on {choice['split']}: {choice['reference']['average']:.4f} [{lo:.4f}, {hi:.4f}]; "
        f"rule: {choice['rule']}",
        f"{'loss':<6}{'run':<22}{'lambda':>8}{'average':>9}{'bytes':>13}  within",
    ]
    for loss, e in sorted(choice["losses"].items()):
        lines.append(
            f"{loss:<6}{e['run']:<22}{e['lambda']:>8g}{e['average']:>9.4f}{e['bytes']:>13,}  "
            + ("yes" if e["within"] else "no")
        )
    lines.append(
        f"chosen: {choice['chosen']}" if choice["chosen"] else "chosen: none (no FlexSwitch run on this split)"
    )
    return lines


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _with_interval(row: dict | None, n: Mapping[str, int] | None) -> str:
    """``95.7% [95.2, 96.2]`` (the 95% interval of the average, :func:`stats.intervals`) when the
    per-task test sizes ``n`` are known, else the bare percentage."""
    if not row or row.get("average") is None:
        return "—"
    if not n or not row.get("per_task") or not set(row["per_task"]) <= set(n):
        return _pct(row["average"])
    lo, hi = intervals(row, n)["average_ci"]
    return f"{_pct(row['average'])} [{100 * lo:.1f}, {100 * hi:.1f}]"


def markdown(block: dict, n: Mapping[str, int] | None = None, auto: dict | None = None) -> str:
    """The ``flex`` block as Markdown: the runs, the Tab. XI ablation, storage against T-Switch at
    alpha 0.7 and the routing cost (the app's *Compare* view and the README). ``n``: items per task
    of the block's split, to print each run's and each Tab. XI row's accuracy with its 95% interval
    (``auto``: the Auto-Switch row's ``results.json`` method entry, whose per-task accuracies the
    block does not repeat); the served run (the block's ``main``) is marked."""
    lines = [
        f"**FlexSwitch runs** ({block['split']} split; each learned on "
        f"{next(iter(block['runs'].values())).get('exemplars') or 100} exemplars per task)",
        "",
        "| run | loss | λ | steps | FlexSwitch | routed (k-NN) | routing | bytes | s/step (median) |",
        "|---" * 9 + "|",
    ]
    for stem, run in block["runs"].items():
        routed = run.get("knn") or {}
        sps = run.get("seconds_per_step") or {}
        loss = run["loss"] + _MODE_NOTE.get(run.get("mode"), "").format(alpha=run.get("alpha") or 0)
        served = " (served)" if stem == block.get("main") else ""
        lines.append(
            f"| `{stem}`{served} | {loss} | {run['lambda']:g} | {run['steps']} | "
            f"{_with_interval(run['flexswitch'], n)} | {_with_interval(routed, n)} | "
            f"{_pct(routed.get('routing_accuracy'))} | {run['bytes']:,} | "
            f"{statistics.median(sps.values()) if sps else 0.0:.2f} |"
        )
    ref = block.get("reference_tswitch")
    if ref and block.get("bytes_vs_reference") is not None:
        lines += [
            "",
            f"The main run (`{block['main']}`) takes **{_pct(block['bytes_vs_reference'])}** of the bytes "
            f"of T-Switch at α = {ref['alpha']:g} ({ref['bytes']:,} B, {_pct(ref['average'])}); the "
            f"journal's target is ≤ 30% at equal or better accuracy.",
        ]
    if block.get("ablation"):
        lines += [
            "",
            "**Component ablation** (journal Tab. XI"
            + (f"; {block['ablation_loss'].upper()} at the journal's λ" if block.get("ablation_loss") else "")
            + ")",
            "",
            "| configuration | run | average | routing | switch bytes | router bytes |",
            "|---" * 6 + "|",
        ]
        for row in block["ablation"]:
            router = "—" if row.get("router_bytes") is None else f"{row['router_bytes']:,}"
            # per-task accuracies for the interval: the row's run under its router, or Auto-Switch's
            source = (block["runs"].get(row["run"]) or {}).get(row["router"]) if row["run"] else auto
            scored = {"average": row["average"], "per_task": (source or {}).get("per_task")}
            lines.append(
                f"| {row['row']} | {('`' + row['run'] + '`') if row['run'] else '—'} | "
                f"{_with_interval(scored, n)} | {_pct(row.get('routing_accuracy'))} | "
                f"{row['switch_bytes']:,} | {router} |"
            )
    routing = block.get("routing", {})
    if "knn" in routing and "low_rank" in routing:
        knn, low = routing["knn"], routing["low_rank"]
        lines += [
            "",
            f"Routing cost per query: Auto-Switch searches {knn['entries']} exemplars of dimension "
            f"{knn['dim']} ({knn['macs_per_query']:,} multiply-adds, {knn['bytes']:,} B stored); "
            f"Auto-FlexSwitch projects to rank {low['rank']} and searches {low['entries']} K-means "
            f"centres ({low['macs_per_query']:,} multiply-adds, {low['bytes']:,} B stored).",
        ]
    return "\n".join(lines)


def _block_sizes(results: dict) -> dict[str, int] | None:
    """Items per task of the ``flex`` block's split: the methods' ``n`` when the block and the
    methods were evaluated on the same split (``None`` otherwise: no intervals are drawn)."""
    flex = results.get("flex") or {}
    if flex.get("split") != results.get("split", "test"):
        return None
    return next((row["n"] for row in results.get("methods", {}).values() if row.get("n")), None)


def results_markdown(results: dict) -> str:
    """:func:`markdown` of a whole ``results.json``'s ``flex`` block, with intervals where the
    split's sizes are known; ``""`` when the results hold no FlexSwitch runs."""
    flex = results.get("flex")
    if not flex or not flex.get("runs"):
        return ""
    return markdown(flex, _block_sizes(results), results.get("methods", {}).get("auto-switch"))
