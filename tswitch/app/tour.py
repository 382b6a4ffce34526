"""The *Guided tour*: the papers' argument on the selected suite's own files, one step per screen.

1. task vectors and their magnitudes (the pack's per-tensor scales),
2. the pulse experiment (``results.json["pulse"]``),
3. P-Spar and B-Approx on one real tensor with a live α (a task vector taught in this session),
4. storage against accuracy of every method (``results.json["methods"]``, with intervals where given),
5. Auto-Switch routing the presenter's input (computed live).

Every number is read from the suite's files or computed here; ``?tour=N`` opens step ``N``.
"""

from __future__ import annotations

import numpy as np

from . import catalogue, charts, text, views

STEPS = ("vectors", "pulse", "switch", "storage", "routing")
CROP = 48  # entries per side of the value crops of step 3
# where a results.json method row gives its average's 95% interval (tswitch.suites.stats writes "average_ci")
INTERVAL_KEYS = ("average_ci", "average_ci95", "ci95")


def clamp(step) -> int:
    """A step index in ``[0, len(STEPS))`` from anything (a URL parameter is 1-based text)."""
    try:
        value = int(step)
    except (TypeError, ValueError):
        return 0
    return min(max(value, 0), len(STEPS) - 1)


def from_url(query: dict) -> int | None:
    """The 0-based step of ``?tour=N`` (1-based), or ``None`` when the URL names no step
    (``&suite=NAME`` picks the suite: :mod:`.layout_tour`)."""
    value = query.get("tour")
    if value is None:
        return None
    try:
        return clamp(int(value) - 1)
    except ValueError:
        return 0


def position(step: int) -> str:
    return text.TOUR_POSITION.format(step=step + 1, steps=len(STEPS))


def _vectors(suite: str):
    tasks, names, _, scale, _, hover = views._matrices(suite)
    report = catalogue.pack_report(suite)
    params = int(report["num_params"])
    scales = catalogue.task_scales(suite)
    positive = scales[scales > 0]
    md = text.TOUR_STEPS["vectors"].format(
        params=params,
        fp32_mb=4 * params / 1e6,
        tasks=len(tasks),
        all_mb=4 * params * len(tasks) / 1e6,
        lo=float(positive.min()) if positive.size else 0.0,
        hi=float(positive.max()) if positive.size else 0.0,
    )
    fig = charts.tensor_heatmap(scale, tasks, names, text.SCALE_TITLE, "log10", hover, colorscale="Cividis")
    return md, fig


def _pulse(suite: str):
    results = catalogue.results(suite)
    pulse = results.get("pulse")
    if not pulse or "keep_high" not in pulse:
        return text.TOUR_STEPS["pulse-missing"], None
    alphas = sorted(pulse["keep_high"], key=float)
    top = alphas[-1]

    def at(cond: str) -> float:
        rows = pulse.get(cond, {})
        return float(rows[top]["average"]) if top in rows else float("nan")

    md = text.TOUR_STEPS["pulse"].format(
        split=results.get("split", "test"),
        tasks=len(results["tasks"]),
        alpha=float(top),
        high=at("keep_high"),
        low=at("keep_low"),
        random=at("random"),
        bapprox=at("b_approx"),
        gap=100 * (at("keep_high") - at("keep_low")),
    )
    return md, charts.lines(views._curves(pulse, text.PULSE_LABELS), text.PULSE_TITLE, text.PULSE_AXIS)


def interval_of(entry: dict):
    """``(lo, hi)`` of a method's average where results.json gives it, else ``None``."""
    for key in INTERVAL_KEYS:
        value = entry.get(key)
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return float(value[0]), float(value[1])
    return None


def _storage(suite: str):
    results = catalogue.results(suite)
    methods = results["methods"]
    points = views.storage_points(results)
    pretrained = methods.get("pretrained", {}).get("average")
    fig = charts.storage_scatter(points, pretrained)
    intervals = {p["name"]: interval_of(methods[p["name"]]) for p in points if p["bytes"] > 0}
    shown = {n: iv for n, iv in intervals.items() if iv is not None}
    for name, (lo, hi) in shown.items():
        acc = float(methods[name]["average"])
        fig.add_scatter(
            x=[methods[name]["extra_bytes"]],
            y=[acc],
            mode="markers",
            marker=dict(size=1, color="grey"),
            error_y=dict(type="data", symmetric=False, array=[hi - acc], arrayminus=[acc - lo]),
            showlegend=False,
            hoverinfo="skip",
        )
    static = {m: r for m, r in methods.items() if m not in ("pretrained", "individual") and "switch" not in m}
    best = max(static, key=lambda m: static[m]["average"]) if static else None
    ind, ts = methods.get("individual", {}), methods.get("t-switch", {})
    md = text.TOUR_STEPS["storage"].format(
        split=results.get("split", "test"),
        tasks=len(results["tasks"]),
        individual=float(ind.get("average", float("nan"))),
        individual_mb=ind.get("extra_bytes", 0) / 1e6,
        tswitch=float(ts.get("average", float("nan"))),
        tswitch_mb=ts.get("extra_bytes", 0) / 1e6,
        ratio=ind.get("extra_bytes", 0) / max(1, ts.get("extra_bytes", 1)),
        best_static=views.method_label(best) if best else "—",
        static=float(static[best]["average"]) if best else float("nan"),
        intervals=text.TOUR_INTERVALS if shown else "",
    )
    return md, fig


def _routing(suite: str):
    info = catalogue.get(suite)
    routing = catalogue.results(suite)["methods"].get("auto-switch", {}).get("routing_accuracy", float("nan"))
    k = info.default_k() if callable(info.default_k) else info.default_k  # a method since the Manifest class
    md = text.TOUR_STEPS["routing"].format(k=k, routing=float(routing))
    if info.modality != "text":
        md += "\n\n" + text.TOUR_IMAGE_ONLY
    return md, None


def step_view(suite, step, taught: list | None = None):
    """``(markdown, figure, position)`` of one step for ``suite``; ``taught``: the session's tasks
    (step 3 uses the first one's kept task-vector tensor)."""
    step = clamp(step)
    if suite not in catalogue.catalogue():
        return "", None, position(step)
    name = STEPS[step]
    if name == "switch":
        md = text.TOUR_STEPS["switch" if taught else "switch-none"]
        return md, None, position(step)
    view = {"vectors": _vectors, "pulse": _pulse, "storage": _storage, "routing": _routing}[name]
    md, fig = view(suite)
    return md, fig, position(step)


def switch_view(task, alpha: float):
    """P-Spar and B-Approx of ``task``'s kept tensor at ``alpha``: ``(P-Spar figure, B-Approx figure, markdown)``."""
    from ..codec.layouts import choose_layout
    from ..core.binary import b_approx
    from ..core.pspar import pspar_mask, validate_alpha

    if task is None:
        return None, None, ""
    alpha = validate_alpha(min(float(alpha), 0.999))
    tau = task.sample_tau.float()
    mask = pspar_mask(tau.reshape(-1), alpha).view(tau.shape)
    switch = b_approx(tau, alpha)
    kept = int(mask.sum())
    flat = mask.reshape(-1).numpy()
    positive = (tau.reshape(-1)[mask.reshape(-1)] > 0).numpy()
    layout = choose_layout(flat, 1)
    bapprox_bytes = len(layout.encode(flat, positive, 1)) + 4
    pspar = tau * mask
    norm = float(tau.norm()) or 1.0
    view = tau.reshape(tau.shape[0], -1)
    h, w = min(CROP, view.shape[0]), min(CROP, view.shape[1])
    peak = float(view[:h, :w].abs().max()) or 1.0
    pspar_crop = (pspar.reshape(view.shape)[:h, :w] / peak).tolist()
    signs = switch.reconstruct().reshape(view.shape)[:h, :w]
    md = text.TOUR_SWITCH_MD.format(
        tensor=task.sample_tensor,
        shape=tuple(tau.shape),
        task=task.name,
        alpha=alpha,
        kept=kept,
        numel=tau.numel(),
        density=kept / max(1, tau.numel()),
        pspar_bytes=4 * kept + (tau.numel() + 7) // 8,
        scale=switch.scale,
        bapprox_bytes=bapprox_bytes,
        layout=layout.name,
        fp32=4 * tau.numel(),
        pspar_err=float((tau - pspar).norm()) / norm,
        bapprox_err=float((tau - switch.reconstruct()).norm()) / norm,
    )
    return (
        charts.mask_heatmap(pspar_crop, text.TOUR_PSPAR_TITLE.format(h=h, w=w), signed=True),
        charts.mask_heatmap(signs.sign().tolist(), text.TOUR_BAPPROX_TITLE.format(h=h, w=w), signed=True),
        md,
    )


def alpha_range(suite: str) -> tuple[float, float, float]:
    """``(min, max, value)`` of step 3's slider: the suite's alpha grid when it has one, with its choice."""
    grid = views.alpha_grid(catalogue.results(suite)) if suite in catalogue.catalogue() else {}
    alphas = [a for rows in grid.values() for a, _ in rows]
    chosen = catalogue.results(suite).get("choice", {}).get("alpha") if alphas else None
    if not alphas:
        return 0.1, 0.99, 0.9
    return float(np.min(alphas)), float(np.max(alphas)), float(chosen if chosen is not None else np.max(alphas))
