"""The *Try it* view's callbacks: plain functions of plain values (unit-tested without a server).

:func:`predict` is the public API endpoint (``api_name="predict"``). It never raises for a bad
request: it returns ``{"error": "<one line>"}`` instead, so the page can show the message and
``gradio_client`` users get a JSON object either way (check ``"error" in result``).

Inputs arrive unprocessed (the events use ``preprocess=False``) so that the app, not gradio's image
decoder, judges uploads: an image is ``None``, a path, bytes, a PIL image or gradio's file dict
(``{"path": ...}``), and :func:`tswitch.inputs.load_image` decodes it under a pixel budget.
"""

from __future__ import annotations

import base64
import html
import logging
import math

import gradio as gr

from ..inputs import InputError, check_text, load_image
from . import catalogue, charts, text
from .catalogue import UnknownSuite

log = logging.getLogger(__name__)
HISTORY_SIZE = 8
COMPARE_LABELS = 12  # most labels of the routed head the comparison shows (by top probability)
SNIPPET = 120  # characters of an input or exemplar shown in tables


# -- validating a request ----------------------------------------------------------------------
def check_method(info: catalogue.SuiteInfo, method) -> str:
    method = method or info.methods[0]
    if not isinstance(method, str) or method not in info.methods:
        raise InputError(text.UNKNOWN_METHOD.format(suite=info.name, method=method, valid=", ".join(info.methods)))
    return method


def check_k(info: catalogue.SuiteInfo, k, method: str = "auto-switch") -> int:
    if k is None or k == "":
        return info.default_k(method)
    top = catalogue.max_k(info.name, method)
    ok = isinstance(k, (int, float)) and not isinstance(k, bool) and math.isfinite(k) and k == int(k)
    if not ok or not 1 <= int(k) <= top:
        raise InputError(text.BAD_K.format(max_k=top, k=k))
    return int(k)


def image_source(value):
    """What :func:`load_image` takes, from any form an image arrives in (``None`` if absent)."""
    if isinstance(value, dict):
        if value.get("path"):
            return value["path"]
        url = value.get("url") or ""
        if url.startswith("data:") and "," in url:
            try:
                return base64.b64decode(url.split(",", 1)[1], validate=True)
            except ValueError:
                raise InputError("not a readable image (bad base64 data)") from None
        return None
    return value


def read_input(info: catalogue.SuiteInfo, text_value, image_value):
    """The suite's input: checked text, or a decoded RGB image; :class:`InputError` otherwise."""
    if info.modality == "text":
        if text_value is None:
            raise InputError(text.NEED_TEXT.format(suite=info.name))
        return check_text(text_value)
    source = image_source(image_value)
    if source is None:
        raise InputError(text.NEED_IMAGE.format(suite=info.name))
    return load_image(source)


# -- the API -------------------------------------------------------------------------------------
def predict(suite, text_value, image_value, method, k, progress=None) -> dict:
    """Route one input with Auto-Switch and predict with the merged model.

    Returns ``{"suite", "method", "k", "routed_task", "weights", "neighbours", "prediction",
    "all_tasks"}``: the task the input was routed to, the switch weights per task, the C nearest
    exemplars (task, distance, index, text preview), the routed task's top-5 labels with their
    probabilities, and every task head's top label under the same merged model. On a bad request:
    ``{"error": "<one line>"}``.
    """
    try:
        info = catalogue.get(suite)
        method = check_method(info, method)
        k = check_k(info, k, method)
        item = read_input(info, text_value, image_value)
        result = catalogue.runtime(info.name, progress).route([item], k=k, method=method)[0]
    except (InputError, UnknownSuite) as exc:
        return {"error": str(exc)}
    except Exception as exc:  # the app keeps serving; the visitor gets one line, the log the rest
        log.exception("predict failed")
        return {"error": text.INTERNAL.format(kind=type(exc).__name__)}
    return {"suite": info.name, "method": method, "k": k, **result}


# -- showing a result ----------------------------------------------------------------------------
def snippet(value: str) -> str:
    """``value`` on one line, cut to ``SNIPPET`` characters."""
    value = " ".join(value.split())
    return value if len(value) <= SNIPPET else value[: SNIPPET - 1] + "…"


def neighbours_html(suite: str, neighbours: list[dict]) -> str:
    """The nearest exemplars as an HTML table: rank, task, distance, text snippet or thumbnail."""
    stored = catalogue.exemplars(suite)
    rows = []
    for rank, n in enumerate(neighbours, 1):
        index = n.get("exemplar")
        item = stored[index] if index is not None and 0 <= index < len(stored) else {}
        if index is None and n.get("centre") is not None:  # Auto-FlexSwitch votes with K-means centres
            cell = html.escape(text.CENTRE.format(centre=n["centre"], task=n["task"]))
        elif item.get("thumb"):
            cell = (
                f'<img alt="exemplar {n["exemplar"]}" style="height:40px" src="data:image/png;base64,{item["thumb"]}">'
            )
        else:
            cell = html.escape(snippet(n.get("exemplar_preview") or item.get("text") or ""))
        rows.append(
            f"<tr><td>{rank}</td><td>{html.escape(n['task'])}</td><td>{n['distance']:.4f}</td><td>{cell}</td></tr>"
        )
    head = "".join(f"<th style='text-align:left'>{h}</th>" for h in text.NEIGHBOUR_HEADERS)
    return (
        f"<div style='max-height:360px;overflow-y:auto'><table style='width:100%'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def show_result(result: dict):
    """``(status markdown, weights figure, prediction label, neighbours HTML)`` of a :func:`predict` result."""
    if not result or "error" in result:
        message = (result or {}).get("error", "")
        if message:
            gr.Warning(message)
        return text.ERROR.format(message=message) if message else "", None, None, ""
    task, k = result["routed_task"], result["k"]
    label, prob = next(iter(result["prediction"].items()))
    status = text.ROUTED.format(
        task=task,
        votes=round(result["weights"][task] * k),
        k=k,
        label=label,
        prob=prob,
        entries=text.ENTRIES.get(str(result.get("method")), "exemplars"),
    )
    return (
        status,
        charts.weights_bar(result["weights"], k, task),
        result["prediction"],
        neighbours_html(result["suite"], result["neighbours"]),
    )


def cleared() -> tuple:
    """Empty result outputs (raw JSON, comparison figure and table, weights, prediction, neighbours)."""
    return None, None, [], None, None, ""


def compare_models(result: dict, text_value, image_value):
    """The same input under the merged model, the pre-trained model and each single task switch
    (one-hot T-Switch weights), all read through the routed task's head: ``(figure, table rows)``."""
    if not result or "error" in result:
        return None, []
    import torch

    info = catalogue.get(result["suite"])
    suite = catalogue.runtime(info.name)
    engine = suite.router_for(result["method"]).engine
    try:
        item = read_input(info, text_value, image_value)
    except InputError:  # the input was changed or cleared since the prediction
        return None, []
    tasks = list(engine.tasks)
    merged = [result["weights"].get(t, 0.0) for t in tasks]
    weights = torch.cat([torch.tensor([merged]), torch.zeros(1, len(tasks)), torch.eye(len(tasks))])
    names = [text.MODEL_MERGED.format(method=text.METHOD_LABELS[result["method"]]), text.MODEL_PRETRAINED] + [
        text.MODEL_SINGLE.format(task=t) for t in tasks
    ]
    routed = tasks.index(result["routed_task"])
    batch = suite.adapter.preprocess([item] * len(names))
    output = engine.run(batch, weights, routed_task=torch.full((len(names),), routed))
    probs = torch.stack(output.probs_routed)  # (models, labels of the routed task)
    labels = suite.heads[result["routed_task"]].labels
    keep = probs.amax(0).argsort(descending=True)[:COMPARE_LABELS].sort().values
    figure = charts.comparison_heatmap(names, [labels[i] for i in keep], probs[:, keep].tolist())
    rows = [
        [
            name,
            ", ".join(f"{t} {w:g}" for t, w in zip(tasks, row.tolist()) if w) or "—",
            labels[int(p.argmax())],
            round(float(p.max()), 4),
        ]
        for name, row, p in zip(names, weights, probs)
    ]
    return figure, rows


def remember(history: list | None, result: dict, text_value, image_value) -> tuple[list, list]:
    """The visitor's recent inputs (kept in their ``gr.State``), newest first: ``(state, table rows)``."""
    history = list(history or [])
    if result and "error" not in result:
        shown = snippet(text_value) if isinstance(text_value, str) and text_value.strip() else text.INPUT_IMAGE
        label, prob = next(iter(result["prediction"].items()))
        history = [[result["suite"], shown, result["routed_task"], label, round(prob, 4)]] + history
    history = history[:HISTORY_SIZE]
    return history, history


# -- choosing a suite and an example --------------------------------------------------------------
def suite_controls(suite: str):
    """Updates of the *Try it* inputs for ``suite``: router, C slider, text box, image, the two
    example tables, and a status line (an error when the suite is unknown)."""
    try:
        info = catalogue.get(suite)
    except UnknownSuite as exc:
        gr.Warning(str(exc))
        return (gr.update(),) * 6 + (text.ERROR.format(message=exc),)
    is_text = info.modality == "text"
    examples = info.examples()
    return (
        gr.update(
            choices=[(text.METHOD_LABELS[m], m) for m in info.methods],
            value=info.methods[0],
            visible=len(info.methods) > 1,
        ),
        # a slider needs minimum < maximum; check_k still refuses C beyond the exemplars
        gr.update(maximum=max(2, catalogue.max_k(info.name)), value=min(info.default_k(), catalogue.max_k(info.name))),
        # the inputs keep their values: this also runs at page load, maybe after an example was picked
        gr.update(visible=is_text),
        gr.update(visible=not is_text),
        gr.Dataset(samples=[[t, snippet(e)] for t, e in examples] if is_text else [["", ""]], visible=is_text),
        gr.Dataset(samples=[[t, e] for t, e in examples] if not is_text else [["", None]], visible=not is_text),
        "",
    )


def example_input(suite: str, index) -> tuple:
    """``(text, image)`` of example ``index`` of ``suite`` (one of them ``None``)."""
    info = catalogue.get(suite)
    examples = info.examples()
    if not isinstance(index, int) or not 0 <= index < len(examples):
        return gr.update(), gr.update()
    value = examples[index][1]
    return (value, None) if info.modality == "text" else (None, value)
