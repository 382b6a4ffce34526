"""The *Compare* and *Inside a switch* views' callbacks: suite files in, figures and tables out.

Every number comes from the suite's ``results.json`` and ``switches.tsw`` (through
:mod:`.catalogue`, cached); explanations and paper links come from the merge registry.

Length: the Compare and Inside-a-switch callbacks, each a few lines over catalogue data; one module
keeps the page's read-only views together (charts are in charts.py, text in text.py).
"""

from __future__ import annotations

import math

import gradio as gr

from . import catalogue, charts, text

MASK_SIDE = 128  # blocks per side of the downsampled mask image
MASK_CROP = 64  # entries per side of the full-resolution corner


# -- Compare --------------------------------------------------------------------------------------
def pareto(points: list[dict]) -> set[str]:
    """Names of the points no other point dominates (no more bytes, no less accuracy, one strictly)."""
    return {
        p["name"]
        for p in points
        if not any(
            q["bytes"] <= p["bytes"]
            and q["accuracy"] >= p["accuracy"]
            and (q["bytes"], q["accuracy"]) != (p["bytes"], p["accuracy"])
            for q in points
        )
    }


def method_label(name: str) -> str:
    return text.METHOD_NAMES.get(name, name)


def storage_points(results: dict) -> list[dict]:
    points = [
        {
            "name": m,
            "label": method_label(m),
            "bytes": int(r["extra_bytes"]),
            "accuracy": float(r["average"]),
            "ci": r.get("average_ci"),
        }
        for m, r in results["methods"].items()
        if "extra_bytes" in r and "average" in r
    ]
    front = pareto(points)
    return [{**p, "pareto": p["name"] in front} for p in points]


def per_task_table(results: dict) -> tuple[list[str], list[list]]:
    """Headers and rows: method, accuracy per task and on average (%), its 95% interval, the gain
    retained (%), extra MB, routing accuracy (%)."""
    tasks = results["tasks"]
    rows = []
    for m, r in results["methods"].items():
        routing, ci, gain = r.get("routing_accuracy"), r.get("average_ci"), r.get("gain_retained")
        rows.append(
            [method_label(m)]
            + [round(100 * r["per_task"][t], 1) for t in tasks]
            + [
                round(100 * r["average"], 1),
                f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}" if ci else None,
                None if gain is None else round(100 * gain, 1),
                round(r.get("extra_bytes", 0) / 1e6, 3),
                None if routing is None else round(100 * routing, 1),
            ]
        )
    headers = [text.METHOD_COL, *tasks, text.AVERAGE, text.CI, text.GAIN, text.EXTRA_MB, text.ROUTING]
    return headers, rows


def methods_markdown(results: dict) -> str:
    """One line per method of the results: what it does and its paper (from the merge registry)."""
    from ..merging import list_methods

    registry = {m.name: m for m in list_methods()}
    lines = [text.METHODS_TITLE]
    for name in results["methods"]:
        entry = registry.get(name) or registry.get(text.REGISTRY_NAME.get(name, ""))
        description = text.METHOD_NOTES.get(name) or text.OWN_METHODS.get(name) or (entry.description if entry else "")
        link = text.PAPER_LINK.format(paper=entry.paper, url=entry.url) if entry else ""
        lines.append(text.METHOD_ROW.format(name=method_label(name), description=description, link=link).rstrip())
    return "\n".join(lines)


def alpha_grid(results: dict) -> dict[str, list[tuple[float, str]]]:
    """BatchNorm option -> the grid's ``(alpha, key)`` pairs, sorted."""
    return {option: sorted((float(a), a) for a in rows) for option, rows in results.get("alpha_grid", {}).items()}


def flex_markdown(results: dict) -> str:
    """The FlexSwitch runs, the Tab. XI ablation and the routing cost, when the results hold
    them (``results.json["flex"]``; ``""`` otherwise). The README's tables use the same renderer."""
    from ..suites.flex_report import results_markdown

    return results_markdown(results)


def flex_matrices(results: dict):
    """``(tasks, tensors, density, bits)`` of the main FlexSwitch run (``results.json["flex"]["modules"]``),
    or ``None``; tensors the run did not learn (stored dense) are blank."""
    modules = (results.get("flex") or {}).get("modules")
    if not modules:
        return None
    tasks = list(modules)
    names = [m["name"] for m in modules[tasks[0]]]
    by_task = [{m["name"]: m for m in modules[t]} for t in tasks]
    density = [[rows[n]["density"] if n in rows else None for n in names] for rows in by_task]
    bits = [[rows[n]["bits"] if n in rows else None for n in names] for rows in by_task]
    return tasks, names, density, bits


def compare_view(suite: str):
    """``(storage figure, per-task table, methods markdown, FlexSwitch markdown, option dropdown,
    alpha slider)`` for ``suite`` (no change for a suite the app does not serve)."""
    if suite not in catalogue.catalogue():
        return (gr.update(),) * 6
    results = catalogue.results(suite)
    pretrained = results["methods"].get("pretrained", {}).get("average")
    individual = results["methods"].get("individual", {}).get("average")
    headers, rows = per_task_table(results)
    grid = alpha_grid(results)
    choice = results.get("choice", {})
    option = choice.get("dense_option") if choice.get("dense_option") in grid else next(iter(grid), None)
    alphas = [a for a, _ in grid[option]] if option is not None else []  # (option is a key of grid)
    slider = (
        gr.update(minimum=min(alphas), maximum=max(alphas), value=choice.get("alpha", alphas[0]), visible=True)
        if alphas
        else gr.update(visible=False)
    )
    flex = flex_markdown(results)
    return (
        charts.storage_scatter(storage_points(results), pretrained, individual),
        gr.update(value={"headers": headers, "data": rows}),
        text.TIE_NOTE + "\n\n" + methods_markdown(results),
        gr.update(value=flex, visible=bool(flex)),
        gr.update(choices=list(grid), value=option, visible=len(grid) > 1),
        slider,
    )


def alpha_view(suite: str, option: str, alpha: float):
    """T-Switch / Auto-Switch along the alpha grid of ``option``, with the grid point nearest
    ``alpha`` marked: ``(figure, markdown)``."""
    if suite not in catalogue.catalogue():
        return None, ""
    results = catalogue.results(suite)
    grid = alpha_grid(results)
    if option not in grid or not grid[option]:
        return None, ""
    pairs = grid[option]
    rows = results["alpha_grid"][option]
    # each method at the alphas it was scored at (Auto-Switch: test only, maybe a subset of alphas)
    series = {}
    for m in ("t-switch", "auto-switch"):
        for split in ("test", "val"):
            points = [(a, rows[key][m][split]["average"]) for a, key in pairs if split in rows[key].get(m, {})]
            if points:
                series[text.SPLIT_LINE.format(method=method_label(m), split=split)] = (
                    [a for a, _ in points],
                    [v for _, v in points],
                )
    picked, key = min(pairs, key=lambda p: abs(p[0] - float(alpha if alpha is not None else p[0])))
    chosen = results.get("choice", {})
    fig = charts.lines(
        series,
        text.ALPHA_TITLE,
        text.ALPHA_AXIS,
        marker_x=picked,
        marker_label=text.ALPHA_CHOSEN
        if (chosen.get("alpha") == picked and chosen.get("dense_option") == option)
        else None,
        dashed=[n for n in series if n.endswith("(val)")],
    )
    auto = rows[key].get("auto-switch", {}).get("test")
    summary = (text.ALPHA_SELECTED if auto else text.ALPHA_SELECTED_TS).format(
        alpha=key,
        option=option,
        ts=rows[key]["t-switch"]["test"]["average"],
        auto=auto["average"] if auto else None,
    )
    sweep = chosen.get("k_sweep")
    if sweep:
        cells = ", ".join(text.K_SWEEP_ROW.format(c=c, val=r["val"], test=r["test"]) for c, r in sweep.items())
        summary += "\n\n" + text.K_SWEEP.format(alpha=chosen["alpha"], k=chosen["k"], rows=cells)
    return fig, summary


# -- Inside a switch ---------------------------------------------------------------------------
def _matrices(suite: str):
    report = catalogue.pack_report(suite)
    header = catalogue.pack_header(suite)
    scales = catalogue.task_scales(suite)
    tasks = [t["name"] for t in report["tasks"]]
    names = [s["name"] for s in report["tensors"]]
    density, scale, bits, hover = [], [], [], []
    for i, entry in enumerate(header.tasks):
        widths = entry.widths
        d_row, s_row, b_row, h_row = [], [], [], []
        for j, spec in enumerate(report["tensors"]):
            cell = spec["tasks"][i]
            dense = cell["encoding"] == "dense-f16"
            d_row.append(None if dense else cell["nnz"] / max(1, spec["numel"]))
            s_row.append(None if dense or scales[i, j] <= 0 else math.log10(float(scales[i, j])))
            b_row.append(None if dense else widths[j])
            h_row.append(
                text.DENSE_NOTE
                if dense
                else f"{cell['encoding']}, {cell['nnz']:,} / {spec['numel']:,} kept, scale {float(scales[i, j]):.3g}"
            )
        density.append(d_row)
        scale.append(s_row)
        bits.append(b_row)
        hover.append(h_row)
    return tasks, names, density, scale, bits, hover


def _curves(block: dict, labels: dict) -> dict:
    return {
        labels.get(name, name): (
            [float(a) for a in sorted(rows, key=float)],
            [rows[a]["average"] for a in sorted(rows, key=float)],
        )
        for name, rows in block.items()
    }


def eq16_view(suite: str):
    """Stored switch bytes against SASS (journal Eq. 16) and the entropy bound, per (tensor, task):
    ``(figure, markdown)``. All numbers come from the pack's header (:func:`tswitch.report.pack_report`)."""
    report = catalogue.pack_report(suite)
    measured, predicted, names, encodings = [], [], [], []
    for spec in report["tensors"]:
        for cell in spec["tasks"]:
            if "eq16_bytes" in cell:
                measured.append(cell["bytes"])
                predicted.append(cell["eq16_bytes"])
                names.append(f"{spec['name']} ({cell['task']})")
                encodings.append(cell["encoding"])
    if not measured:
        return None, text.EQ16_NONE
    tasks = report["tasks"]
    bits = sum(t["bits_per_param"] for t in tasks) / len(tasks)
    stored, eq16, bound = (sum(t[k] for t in tasks) for k in ("bytes", "eq16_bytes", "bound_bytes"))
    summary = text.EQ16_SUMMARY.format(
        tasks=len(tasks),
        tensors=len(measured) // len(tasks),
        measured=stored,
        eq16=eq16,
        saved=1 - stored / max(1, eq16),
        bound=bound,
        over_bound=stored / max(1, bound) - 1,
        fp32=report["float32_bytes_per_task"],
        bits=bits,
        layouts=", ".join(sorted({e for t in tasks for e in t["bytes_by_encoding"]})),
    )
    return charts.eq16_scatter(measured, predicted, names, encodings), summary


def inside_view(suite: str, progress=None):
    """``(density, scale, bits figures, FlexSwitch density figure, pulse figure, P-Discard-vs-DARE
    figure, Eq. 16 figure, Eq. 16 markdown, task dropdown, tensor dropdown)`` for ``suite`` (no
    change for a suite the app does not serve). The bits and FlexSwitch-density figures show the
    suite's FlexSwitch run when it has one (else the pack's own per-tensor widths, if any)."""
    if suite not in catalogue.catalogue():
        return (gr.update(),) * 10
    if progress is not None:
        progress(0, desc=text.LOADING.format(suite=suite, part="switches.tsw"))
    tasks, names, density, scale, bits, hover = _matrices(suite)
    flexible = any(b not in (None, 1) for row in bits for b in row)
    results = catalogue.results(suite)
    learned = flex_matrices(results)
    if learned is not None:
        f_tasks, f_names, f_density, f_bits = learned
        bits_fig = charts.tensor_heatmap(f_bits, f_tasks, f_names, text.FLEX_BITS_TITLE, "bits")
        flex_density_fig = charts.tensor_heatmap(
            f_density, f_tasks, f_names, text.FLEX_DENSITY_TITLE, text.KEPT_FRACTION
        )
    else:
        bits_fig = charts.tensor_heatmap(bits, tasks, names, text.BITS_TITLE, "bits", hover) if flexible else None
        flex_density_fig = None
    pulse = results.get("pulse")
    pulse_fig = charts.lines(_curves(pulse, text.PULSE_LABELS), text.PULSE_TITLE, text.PULSE_AXIS) if pulse else None
    pspar = results.get("pspar_vs_dare")
    pspar_fig = charts.lines(_curves(pspar, text.PSPAR_LABELS), text.PSPAR_TITLE, text.PULSE_AXIS) if pspar else None
    eq16_fig, eq16_md = eq16_view(suite)
    shapes = {s["name"]: s["shape"] for s in catalogue.pack_report(suite)["tensors"]}
    matrices = [n for n in names if len(shapes[n]) >= 2]  # default: one from mid-network
    return (
        charts.tensor_heatmap(density, tasks, names, text.DENSITY_TITLE, text.KEPT_FRACTION, hover),
        charts.tensor_heatmap(scale, tasks, names, text.SCALE_TITLE, "log10", hover, colorscale="Cividis"),
        gr.update(value=bits_fig, visible=bits_fig is not None),
        gr.update(value=flex_density_fig, visible=flex_density_fig is not None),
        gr.update(value=pulse_fig, visible=pulse_fig is not None),
        gr.update(value=pspar_fig, visible=pspar_fig is not None),
        eq16_fig,
        eq16_md,
        gr.update(choices=tasks, value=tasks[0] if tasks else None),
        gr.update(choices=matrices, value=matrices[len(matrices) // 2] if matrices else None),
    )


def _block_mean(values, side: int):
    """Mean over ``ceil(H / side) x ceil(W / side)`` blocks of a 2-D tensor (zero-padded edges are
    excluded from each mean)."""
    import torch

    h, w = values.shape
    bh, bw = math.ceil(h / side), math.ceil(w / side)
    pad = torch.nn.functional.pad(values, (0, -w % bw, 0, -h % bh))
    ones = torch.nn.functional.pad(torch.ones_like(values), (0, -w % bw, 0, -h % bh))
    sums = pad.reshape(pad.shape[0] // bh, bh, pad.shape[1] // bw, bw).sum((1, 3))
    counts = ones.reshape(sums.shape[0], bh, sums.shape[1], bw).sum((1, 3))
    return sums / counts, bh, bw


def mask_view(suite: str, task: str, tensor: str):
    """One task's stored tensor: ``(kept fraction per block figure, signs of the top-left corner
    figure, markdown)``. Tensors of more than two dimensions are viewed as ``(shape[0], -1)``."""
    if suite not in catalogue.catalogue():
        return None, None, ""
    header = catalogue.pack_header(suite)
    if task not in [t.name for t in header.tasks] or tensor not in [s.name for s in header.tensors]:
        return None, None, ""  # e.g. the dropdowns still hold the previous suite's choices
    item = catalogue.stored_tensor(suite, task, tensor)
    if not hasattr(item, "mask"):
        return None, None, text.MASK_DENSE.format(tensor=tensor, task=task)
    mask = item.mask.reshape(item.shape[0], -1)  # (rows, everything else)
    signed = item.reconstruct().reshape(mask.shape).sign() * mask  # +1 / -1 where kept, 0 elsewhere
    h, w = mask.shape
    blocks, bh, bw = _block_mean(mask.float(), MASK_SIDE)
    crop = signed[:MASK_CROP, :MASK_CROP]
    nnz = int(mask.sum())
    summary = text.MASK_SUMMARY.format(
        tensor=tensor,
        task=task,
        shape=tuple(item.shape),
        kept=nnz,
        numel=mask.numel(),
        density=nnz / max(1, mask.numel()),
        positive=int((signed > 0).sum()) / max(1, nnz),
        scale=item.scale,
    )
    return (
        charts.mask_heatmap(blocks.tolist(), text.MASK_TITLE.format(bh=bh, bw=bw, h=h, w=w), signed=False),
        charts.mask_heatmap(crop.tolist(), text.MASK_CROP_TITLE.format(h=crop.shape[0], w=crop.shape[1]), signed=True),
        summary,
    )
