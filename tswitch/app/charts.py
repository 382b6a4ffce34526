"""Plotly figures: plain data in, a ``go.Figure`` out (no suite access, no gradio).

Titles and axis names come from :mod:`.text`; every number comes from the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.colors import qualitative

from . import text

PALETTE = qualitative.Plotly
HEIGHT = 340


def _layout(fig: go.Figure, title: str, height: int = HEIGHT, **kwargs) -> go.Figure:
    fig.update_layout(
        title=dict(text=title, x=0.01, font=dict(size=14)),
        template="plotly_white",
        height=height,
        margin=dict(l=60, r=20, t=50, b=50),
        **kwargs,
    )
    return fig


def task_colours(tasks: Sequence[str]) -> dict[str, str]:
    return {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(tasks)}


def weights_bar(weights: Mapping[str, float], k: int, routed: str) -> go.Figure:
    """Auto-Switch's task weights ``votes / C`` (T-Switch Eq. 8), the routed task outlined."""
    tasks = list(weights)
    colours = task_colours(tasks)
    fig = go.Figure(
        go.Bar(
            x=tasks,
            y=[weights[t] for t in tasks],
            marker_color=[colours[t] for t in tasks],
            marker_line_width=[3 if t == routed else 0 for t in tasks],
            marker_line_color="black",
            text=[text.VOTES_TEXT.format(votes=round(weights[t] * k), k=k) for t in tasks],
            textposition="auto",
        )
    )
    fig.update_yaxes(range=[0, 1], title=text.WEIGHTS_AXIS)
    return _layout(fig, text.WEIGHTS, height=300)


def comparison_heatmap(models: Sequence[str], labels: Sequence[str], probs: Sequence[Sequence[float]]) -> go.Figure:
    """Rows: models; columns: the routed task's labels; cells: probability."""
    fig = go.Figure(
        go.Heatmap(
            z=probs,
            x=list(labels),
            y=list(models),
            zmin=0,
            zmax=1,
            colorscale="Blues",
            text=[[f"{p:.2f}" for p in row] for row in probs],
            texttemplate="%{text}",
            colorbar=dict(title=text.PROBABILITY),
        )
    )
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, text.COMPARISON, height=max(220, 60 + 34 * len(models)))


def percent_format(values: Sequence[float]) -> str:
    """A tick format whose precision follows the spread of ``values`` (fractions), so that ticks a few
    tenths of a point apart never print the same label ("81%, 81%, 80%")."""
    finite = [v for v in values if v is not None]
    span = max(finite) - min(finite) if len(finite) > 1 else 1.0
    return ".0%" if span >= 0.2 else ".1%" if span >= 0.02 else ".2%"


def storage_scatter(
    points: Sequence[dict], pretrained_accuracy: float | None, individual_accuracy: float | None = None
) -> go.Figure:
    """Extra bytes (log axis) against average accuracy with its 95% interval as an error bar;
    ``points[i]``: name, label, bytes, accuracy, pareto (bool), ci (``[lo, hi]`` or ``None``). Methods
    with zero extra bytes cannot sit on a log axis: the pre-trained model is a horizontal reference
    line instead, and so is the individual fine-tunes' accuracy."""
    fig = go.Figure()
    shown = sorted((p for p in points if p["bytes"] > 0), key=lambda p: (p["bytes"], p["accuracy"]))
    # neighbours along the storage axis alternate their labels above and below, so they rarely collide
    fig.add_trace(
        go.Scatter(
            x=[p["bytes"] for p in shown],
            y=[p["accuracy"] for p in shown],
            mode="markers+text",
            text=[p["label"] for p in shown],
            showlegend=False,
            textposition=["top center" if i % 2 == 0 else "bottom center" for i in range(len(shown))],
            marker=dict(
                size=[14 if p["pareto"] else 9 for p in shown],
                symbol=["star" if p["pareto"] else "circle" for p in shown],
                color=[PALETTE[1] if p["pareto"] else PALETTE[0] for p in shown],
            ),
            hovertemplate="%{text}<br>%{x:,.0f} B<br>%{y:.2%}<extra></extra>",
            error_y=dict(
                type="data",
                symmetric=False,
                array=[(p["ci"][1] - p["accuracy"]) if p.get("ci") else 0 for p in shown],
                arrayminus=[(p["accuracy"] - p["ci"][0]) if p.get("ci") else 0 for p in shown],
                thickness=1,
                width=3,
                color="grey",
            ),
        )
    )
    front = sorted((p for p in shown if p["pareto"]), key=lambda p: p["bytes"])
    if front:
        fig.add_trace(
            go.Scatter(
                x=[p["bytes"] for p in front],
                y=[p["accuracy"] for p in front],
                mode="lines",
                line=dict(shape="hv", dash="dot", color=PALETTE[1]),
                name=text.PARETO,
                hoverinfo="skip",
            )
        )
    if pretrained_accuracy is not None:
        fig.add_hline(
            y=pretrained_accuracy,
            line_dash="dash",
            line_color="grey",
            annotation_text=text.PRETRAINED_LINE.format(acc=pretrained_accuracy),
        )
    if individual_accuracy is not None:
        fig.add_hline(
            y=individual_accuracy,
            line_dash="dot",
            line_color="grey",
            annotation_text=text.INDIVIDUAL_LINE.format(acc=individual_accuracy),
            annotation_position="bottom right",
        )
    ys = [p["accuracy"] for p in shown] + [a for a in (pretrained_accuracy, individual_accuracy) if a is not None]
    fig.update_xaxes(type="log", title=text.STORAGE_AXIS)
    fig.update_yaxes(title=text.ACCURACY_AXIS, tickformat=percent_format(ys))
    return _layout(fig, text.STORAGE_TITLE, height=420, legend=dict(orientation="h", y=-0.25))


def lines(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    x_title: str,
    y_title: str = text.ACCURACY_AXIS,
    marker_x: float | None = None,
    marker_label: str | None = None,
    dashed: Sequence[str] = (),
) -> go.Figure:
    """One line per ``name -> (xs, ys)``; an optional vertical marker at ``marker_x``."""
    fig = go.Figure()
    for i, (name, (xs, ys)) in enumerate(series.items()):
        fig.add_trace(
            go.Scatter(
                x=list(xs),
                y=list(ys),
                mode="lines+markers",
                name=name,
                line=dict(color=PALETTE[i % len(PALETTE)], dash="dot" if name in dashed else "solid"),
            )
        )
    if marker_x is not None:
        fig.add_vline(x=marker_x, line_dash="dash", line_color="grey", annotation_text=marker_label or "")
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title=y_title, tickformat=percent_format([y for _, ys in series.values() for y in ys]))
    return _layout(fig, title, legend=dict(orientation="h", y=-0.3))


def tensor_heatmap(
    values: Sequence[Sequence[float | None]],
    tasks: Sequence[str],
    tensors: Sequence[str],
    title: str,
    colour_title: str,
    hover: Sequence[Sequence[str]] | None = None,
    colorscale: str = "Viridis",
) -> go.Figure:
    """``values[task][tensor]``; tensors along x (names on hover), tasks along y. ``None`` cells
    (e.g. tensors stored dense) stay blank."""
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=list(range(len(tensors))),
            y=list(tasks),
            colorscale=colorscale,
            customdata=[list(tensors) for _ in tasks]
            if hover is None
            else [[f"{n}<br>{h}" for n, h in zip(tensors, row)] for row in hover],
            hovertemplate="%{y}<br>%{customdata}<br>%{z:.4g}<extra></extra>",
            colorbar=dict(title=colour_title),
        )
    )
    fig.update_xaxes(title=text.TENSOR_AXIS)
    return _layout(fig, title, height=max(220, 120 + 40 * len(tasks)))


def eq16_scatter(
    measured: Sequence[int], predicted: Sequence[int], names: Sequence[str], encodings: Sequence[str] | None = None
) -> go.Figure:
    """Stored payload bytes against SASS (Eq. 16), one point per (tensor, task), log-log, with y = x,
    one colour per stored encoding."""
    encodings = list(encodings) if encodings is not None else ["sass"] * len(measured)
    fig = go.Figure()
    for enc in sorted(set(encodings)):
        pick = [i for i, e in enumerate(encodings) if e == enc]
        fig.add_trace(
            go.Scatter(
                x=[predicted[i] for i in pick],
                y=[measured[i] for i in pick],
                mode="markers",
                name=enc,
                text=[names[i] for i in pick],
                hovertemplate="%{text}<br>Eq. 16 %{x:,} B<br>stored %{y:,} B<extra>" + enc + "</extra>",
            )
        )
    if predicted:
        lo, hi = max(1, min(min(predicted), min(measured))), max(max(predicted), max(measured))
        fig.add_trace(
            go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line=dict(dash="dash", color="grey"))
        )
    fig.update_xaxes(type="log", title=text.EQ16_PREDICTED)
    fig.update_yaxes(type="log", title=text.EQ16_MEASURED)
    return _layout(fig, text.EQ16_TITLE)


def mask_heatmap(values, title: str, signed: bool) -> go.Figure:
    """A 2-D array as an image: kept fraction in [0, 1], or signs in {-1, 0, +1}."""
    if signed:
        trace = go.Heatmap(
            z=values,
            zmin=-1,
            zmax=1,
            colorscale=[[0, "#c0392b"], [0.5, "#f4f4f4"], [1, "#2471a3"]],
            colorbar=dict(title=text.SIGN, tickvals=[-1, 0, 1]),
        )
    else:
        trace = go.Heatmap(z=values, zmin=0, colorscale="Greys", colorbar=dict(title=text.KEPT_FRACTION))
    fig = go.Figure(trace)
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_xaxes(constrain="domain")
    return _layout(fig, title, height=380)


def accuracy_bars(names: Sequence[str], values: Sequence[float], intervals: Sequence[Sequence[float]]) -> go.Figure:
    """Accuracies as bars with their 95% intervals as error bars (``intervals[i] = (lo, hi)``)."""
    fig = go.Figure(
        go.Bar(
            x=list(names),
            y=list(values),
            marker_color=[PALETTE[i % len(PALETTE)] for i in range(len(names))],
            error_y=dict(
                type="data",
                symmetric=False,
                array=[hi - v for v, (_, hi) in zip(values, intervals)],
                arrayminus=[v - lo for v, (lo, _) in zip(values, intervals)],
            ),
            text=[f"{v:.1%}" for v in values],
            textposition="inside",
        )
    )
    fig.update_yaxes(range=[0, 1], title=text.ACCURACY_AXIS, tickformat=".0%")
    return _layout(fig, text.TEACH_ACCURACY_TITLE, height=320)
