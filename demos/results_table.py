"""Render every committed suite's results.json as Markdown and splice it into README.md.

    python demos/results_table.py            # rewrites the block between the results markers
    python demos/results_table.py --print    # prints it instead

The README's numbers therefore always come from files the build wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
START, END = "<!-- results:start -->", "<!-- results:end -->"
ORDER = [
    "pretrained",
    "individual",
    "weight_average",
    "task_arithmetic",
    "ties",
    "dare",
    "emr_merging",
    "tall_masks",
    "t-switch",
    "auto-switch",
]


def _build_time(prov: dict) -> str:
    """The build's wall time, saying when the run resumed stages an earlier run computed or read its
    fine-tunes from the cache."""
    minutes = f"{prov.get('seconds', 0) / 60:.0f} min"
    tuned = prov.get("finetunes_reused")
    cached = f"; {tuned} fine-tunes read from the cache" if tuned else ""
    reused = prov.get("resumed_stages", 0)
    if not reused:
        return minutes + cached
    total = prov.get("stage_seconds")
    stages = f", {total / 60:.0f} min of stages in all" if total else ""
    return f"this run {minutes}; {reused} stages reused from earlier runs{stages}{cached}"


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}"


def suite_markdown(name: str, results: dict, manifest) -> str:
    tasks = results["tasks"]
    lines = [
        f"### `{name}` ({manifest.adapter_args.get('source', manifest.adapter)}, "
        f"{len(tasks)} tasks, {results['num_params']:,} parameters)",
        "",
        "| method | "
        + " | ".join(tasks)
        + " | average | 95% interval | gain retained | extra storage (MB) | routing |",
        "|---|" + "---|" * (len(tasks) + 5),
    ]
    methods = results["methods"]
    for m in [m for m in ORDER if m in methods] + [m for m in methods if m not in ORDER]:
        r = methods[m]
        routing, ci, gain = r.get("routing_accuracy"), r.get("average_ci"), r.get("gain_retained")
        lines.append(
            f"| {m} | "
            + " | ".join(f"{100 * r['per_task'][t]:.1f}" for t in tasks)
            + f" | **{100 * r['average']:.1f}** | "
            + (f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}" if ci else "")
            + " | "
            + ("" if gain is None else f"{100 * gain:.0f}%")
            + f" | {_mb(r['extra_bytes'])} | "
            + ("" if routing is None else f"{100 * routing:.1f}")
            + " |"
        )
    c = results["choice"]
    prov = results.get("provenance", {})
    lines += [
        "",
        "Test accuracy (%); 95% intervals of the average resample each task's test items (methods whose "
        "averages fall inside each other's interval are a tie); gain retained = (method − Pre-trained) / "
        "(Individual − Pre-trained). "
        f"Hyper-parameters chosen on validation: alpha {c['alpha']:g}, "
        f"C = {c['k']}, BatchNorm statistics: {c['dense_option']}. Build: "
        f"`{prov.get('command', '')}` ({_build_time(prov)}).",
        "",
    ]
    grid = results["alpha_grid"][c["dense_option"]]
    lines += ["| alpha | " + " | ".join(grid) + " |", "|---|" + "---|" * len(grid)]
    for method in ("t-switch", "auto-switch"):
        lines.append(
            f"| {method} | "
            + " | ".join(f"{100 * grid[a][method]['test']['average']:.1f}" if method in grid[a] else "–" for a in grid)
            + " |"
        )
    if c.get("k_sweep"):
        sweep = c["k_sweep"]
        lines += [
            "",
            f"Auto-Switch C sweep at alpha {c['alpha']:g} (T-Switch Tab. 5 analogue; C chosen on validation):",
            "",
            "| C | " + " | ".join(sweep) + " |",
            "|---|" + "---|" * len(sweep),
        ]
        for split in ("val", "test"):
            lines.append(f"| {split} | " + " | ".join(f"{100 * sweep[k][split]:.1f}" for k in sweep) + " |")
    pulse = results["pulse"]
    lines += [
        "",
        "Pulse experiment (T-Switch Fig. 3; average over tasks, "
        + (
            f"first {results['analysis_limit']} test items per task"
            if results.get("analysis_limit")
            else "full test sets"
        )
        + "): discard rate →",
        "",
        "| condition | " + " | ".join(pulse["keep_high"]) + " |",
        "|---|" + "---|" * len(pulse["keep_high"]),
    ]
    for cond in [c for c in ("keep_high", "keep_low", "random", "b_approx") if c in pulse]:
        lines.append(f"| {cond} | " + " | ".join(f"{100 * pulse[cond][a]['average']:.1f}" for a in pulse[cond]) + " |")
    pd = results["pspar_vs_dare"]
    lines += [
        "",
        "P-Discard vs DARE-random, merged by Eq. 4 (T-Switch Table 1 analogue):",
        "",
        "| discard rate | " + " | ".join(pd["p-discard"]) + " |",
        "|---|" + "---|" * len(pd["p-discard"]),
    ]
    for name_ in ("p-discard", "dare-random"):
        lines.append(f"| {name_} | " + " | ".join(f"{100 * pd[name_][a]['average']:.1f}" for a in pd[name_]) + " |")
    if results.get("storage"):
        from tswitch.suites.storage import storage_markdown

        lines += ["", storage_markdown(results["storage"])]
    if results.get("flex", {}).get("runs"):
        from tswitch.suites.flex_report import results_markdown

        lines += ["", results_markdown(results)]
    return "\n".join(lines) + "\n"


def render(root: str = ROOT) -> str:
    assets = os.path.join(root, "assets")
    parts = []
    for name in sorted(os.listdir(assets)) if os.path.isdir(assets) else []:
        folder = os.path.join(assets, name)
        if os.path.isfile(os.path.join(folder, "results.json")):
            with open(os.path.join(folder, "results.json")) as f:
                results = json.load(f)
            from tswitch.suites.manifest import Manifest
            from tswitch.suites.stats import annotate, test_sizes

            manifest = Manifest.load(folder)
            if test_sizes(manifest):  # intervals from each task's accuracy and recorded test size
                results = annotate(results, test_sizes(manifest))
            parts.append(suite_markdown(name, results, manifest))
    return "\n".join(parts) or "_No suite built yet._\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true")
    args = parser.parse_args()
    block = render()
    if args.print:
        print(block)
        return 0
    path = os.path.join(ROOT, "README.md")
    text = open(path, encoding="utf-8").read()
    if START not in text or END not in text:
        print("README.md lacks the results markers", file=sys.stderr)
        return 2
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    open(path, "w", encoding="utf-8").write(f"{head}{START}\n{block}{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
