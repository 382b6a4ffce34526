"""The *Teach a new task* view's callbacks: plain functions of plain values (unit-tested without a server).

:func:`teach` is the public ``teach`` endpoint and :func:`predict` the public ``teach_predict`` one;
like :func:`tswitch.app.callbacks.predict` they never raise for a bad request but return
``{"error": "<one line>"}``. A visitor's session state is ``{"visitor": token}``; their tasks live in
:data:`STORE` under that token (:mod:`tswitch.teach.store`), never in another visitor's reach.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile

import gradio as gr

from ..inputs import InputError, check_text
from ..teach import data as teach_data
from ..teach.config import TeachConfig
from ..teach.data import TeachError, check_name
from ..teach.store import LiveTasks, OneAtATime
from . import catalogue, charts, text
from .catalogue import UnknownSuite

log = logging.getLogger(__name__)
STORE = LiveTasks()  # every visitor's live tasks, capped (tswitch.teach.store)
LINE = OneAtATime()  # one fine-tune at a time: it takes both CPU cores of the Space
CONFIG = TeachConfig(time_cap=float(os.environ.get("TSWITCH_TEACH_SECONDS", "60")))
_EXPORTS: list[str] = []  # the folder downloads are written to, made on first use


def visitor_of(state) -> tuple[dict, str]:
    """``(state, token)``: the session's state with its visitor token (made on first use)."""
    state = dict(state) if isinstance(state, dict) else {}
    if not isinstance(state.get("visitor"), str):
        state["visitor"] = STORE.new_visitor()
    return state, state["visitor"]


def forget(state) -> None:
    """Drop a closed session's tasks (``gr.State``'s delete callback)."""
    if isinstance(state, dict) and isinstance(state.get("visitor"), str):
        for task in STORE.tasks(state["visitor"]):
            STORE.remove(state["visitor"], task.name)


def read_lines(lines, upload, example) -> teach_data.LabelledLines:
    """The visitor's lines: an uploaded CSV, else the pasted lines, else a bundled example."""
    if upload:
        path = upload.get("path") if isinstance(upload, dict) else upload
        if not isinstance(path, str):
            raise TeachError(text.TEACH_BAD_UPLOAD)
        return teach_data.read_upload(path)
    if isinstance(lines, str) and lines.strip():
        return teach_data.parse_lines(lines)
    if example:
        return teach_data.parse_lines(teach_data.example_lines(example))
    return teach_data.parse_lines("")


def _default_name(visitor: str) -> str:
    taken = {t.name for t in STORE.tasks(visitor)}
    return next(f"my-task-{i}" for i in range(1, len(taken) + 2) if f"my-task-{i}" not in taken)


def teach(suite, lines, upload, example, name, state, progress=None):
    """Teach the suite a new task from labelled lines (or a CSV file, or a bundled example).

    Returns ``(result, state)``; ``result`` is ``{"task", "labels", "accuracy" (pretrained, individual,
    t-switch on held-back lines, each with "ci95"), "routing", "fine_tune", "switch" (alpha, density,
    bytes, float32_bytes), "seconds", "evicted"}`` or ``{"error": "<one line>"}``.
    """
    state, visitor = visitor_of(state)
    report = progress or (lambda *a, **k: None)
    try:
        info = catalogue.get(suite)
        if info.modality != "text":
            raise TeachError(text.TEACH_TEXT_ONLY.format(suite=info.name))
        data = read_lines(lines, upload, example)
        name = check_name(name if isinstance(name, str) and name.strip() else _default_name(visitor), info.task_names)
        runtime = catalogue.runtime(info.name, progress)
        STORE.clear_cancel(visitor)

        def waiting(ahead: int) -> None:
            report(0.0, desc=text.TEACH_QUEUE.format(ahead=ahead))

        def phase(name: str, fraction: float, details: dict) -> None:
            desc = text.TEACH_PHASES.get(name, name).format(**details)
            report(fraction, desc=desc)

        with LINE.turn(on_wait=waiting, cancelled=lambda: STORE.cancelled(visitor)):
            from ..teach.run import teach as teach_task  # torch: loaded by the first request, not the page

            task = teach_task(runtime, data, name, CONFIG, progress=phase, cancelled=lambda: STORE.cancelled(visitor))
        STORE.add(visitor, task)
    except (TeachError, UnknownSuite) as exc:
        return {"error": str(exc)}, state
    except Exception as exc:  # the app keeps serving; the visitor gets one line, the log the rest
        log.exception("teach failed")
        return {"error": text.INTERNAL.format(kind=type(exc).__name__)}, state
    finally:
        STORE.clear_cancel(visitor)
    return {**task.summary(), "evicted": STORE.evicted(visitor)}, state


def cancel(state) -> str:
    """Ask the session's running (or waiting) fine-tune to stop."""
    _, visitor = visitor_of(state)
    STORE.cancel(visitor)
    return text.TEACH_CANCELLING


def predict(suite, text_value, k, state) -> dict:
    """Route one sentence with Auto-Switch among the suite's tasks and the session's taught ones.

    Returns ``{"routed_task", "weights", "votes", "k", "neighbours", "prediction", "all_tasks",
    "taught"}`` or ``{"error": "<one line>"}``.
    """
    _, visitor = visitor_of(state)
    try:
        info = catalogue.get(suite)
        tasks = STORE.tasks(visitor, info.name)
        gone = STORE.evicted(visitor)
        if not tasks:
            raise TeachError(text.TEACH_EVICTED.format(names=", ".join(gone)) if gone else text.TEACH_NONE_YET)
        item = check_text(text_value if isinstance(text_value, str) else "")
        k = int(k) if isinstance(k, (int, float)) and not isinstance(k, bool) and k >= 1 else None
        from ..teach import serve

        result = serve.route(catalogue.runtime(info.name), tasks, item, k=k)
    except (TeachError, InputError, UnknownSuite, ValueError) as exc:
        return {"error": str(exc)}
    except Exception as exc:
        log.exception("teach_predict failed")
        return {"error": text.INTERNAL.format(kind=type(exc).__name__)}
    return {"suite": info.name, **result}


def download(suite, task_name, state) -> str | None:
    """The zip of one taught task (``.tsw``, router exemplars, the suite with it), or ``None``."""
    _, visitor = visitor_of(state)
    try:
        info = catalogue.get(suite)
        task = STORE.get(visitor, task_name)
        if task.suite != info.name:
            return None
    except (TeachError, UnknownSuite):
        return None
    if not _EXPORTS:
        _EXPORTS.append(tempfile.mkdtemp(prefix="tswitch-teach-"))
    # one folder per visitor (a hash of the token: the token itself never appears in a URL)
    folder = os.path.join(_EXPORTS[0], hashlib.sha256(visitor.encode()).hexdigest()[:16])
    from ..teach import export

    return export.export_zip(catalogue.runtime(info.name), task, folder)


# -- showing --------------------------------------------------------------------------------------
def task_choices(suite, state) -> tuple:
    """The session's tasks of ``suite``: ``(dropdown update, markdown)``."""
    _, visitor = visitor_of(state)
    tasks = STORE.tasks(visitor, suite) if isinstance(suite, str) else []
    gone = STORE.evicted(visitor)
    names = [t.name for t in tasks]
    lines = [text.TEACH_TASK_ROW.format(name=t.name, labels=", ".join(t.labels), bytes=t.switch_bytes) for t in tasks]
    md = "\n".join(lines) if lines else text.TEACH_NO_TASKS
    if gone:
        md = text.TEACH_EVICTED.format(names=", ".join(gone)) + "\n\n" + md
    return gr.update(choices=names, value=names[-1] if names else None), md


def show_taught(result, state):
    """``(status, accuracy figure, loss figure, switch markdown, mask figure)`` of a :func:`teach` result."""
    if not result or "error" in result:
        message = (result or {}).get("error", "")
        if message:
            gr.Warning(message)
        return (text.ERROR.format(message=message) if message else ""), None, None, "", None
    _, visitor = visitor_of(state)
    acc = result["accuracy"]
    names = [text.TEACH_METHODS[m] for m in acc]
    figure = charts.accuracy_bars(names, [acc[m]["accuracy"] for m in acc], [acc[m]["ci95"] for m in acc])
    tune = result["fine_tune"]
    status = text.TEACH_DONE.format(
        task=result["task"],
        n=result["held_back_lines"],
        train=result["train_lines"],
        steps=tune["steps"],
        stopped=text.TEACH_STOPPED[tune["stopped"]],
        seconds=result["seconds"]["total"],
        **{m.replace("-", "_"): acc[m]["accuracy"] for m in acc},
    )
    try:
        task = STORE.get(visitor, result["task"])
    except TeachError as exc:
        return status + "\n\n" + text.ERROR.format(message=exc), figure, None, "", None
    losses = charts.lines(
        {text.TEACH_LOSS: (list(range(1, len(task.losses) + 1)), task.losses)},
        text.TEACH_LOSS_TITLE,
        text.TEACH_STEP_AXIS,
        text.TEACH_LOSS,
    )
    losses.update_yaxes(tickformat="")
    switch = task.switches[task.sample_tensor]
    mask_md, mask_fig = "", None
    if hasattr(switch, "to_tswitch"):
        from .views import _block_mean

        mask = switch.to_tswitch().mask.reshape(switch.shape[0], -1)
        blocks, bh, bw = _block_mean(mask.float(), 64)
        h, w = mask.shape
        mask_fig = charts.mask_heatmap(blocks.tolist(), text.MASK_TITLE.format(bh=bh, bw=bw, h=h, w=w), signed=False)
        mask_md = text.TEACH_MASK.format(
            tensor=task.sample_tensor, kept=int(mask.sum()), numel=mask.numel(), scale=switch.scale
        )
    s = result["switch"]
    routing = result["routing"]
    md = (
        text.TEACH_SWITCH.format(
            alpha=s["alpha"],
            density=s["density"],
            bytes=s["bytes"],
            fp32=s["float32_bytes"],
            ratio=s["float32_bytes"] / max(1, s["bytes"]),
            bits=8 * s["bytes"] / max(1, s["float32_bytes"] // 4),
            layouts=text.layouts_phrase(s["layouts"]),
            routed=routing["accuracy"],
            n=routing["total"],
            lo=routing["ci95"][0],
            hi=routing["ci95"][1],
        )
        + "\n\n"
        + mask_md
    )
    return status, figure, losses, md, mask_fig


def show_routed(result):
    """``(status, weights figure, prediction, neighbours HTML)`` of a :func:`predict` result."""
    if not result or "error" in result:
        message = (result or {}).get("error", "")
        return (text.ERROR.format(message=message) if message else ""), None, None, ""
    from .callbacks import neighbours_html

    task, k = result["routed_task"], result["k"]
    label, prob = next(iter(result["prediction"].items()))
    votes = ", ".join(f"{t} {v}" for t, v in result["votes"].items() if v)
    status = text.TEACH_ROUTED.format(
        task=task,
        votes=result["votes"][task],
        k=k,
        all=votes,
        label=label,
        prob=prob,
        new=text.TEACH_NEW if task in result["taught"] else "",
    )
    return (
        status,
        charts.weights_bar(result["weights"], k, task),
        result["prediction"],
        neighbours_html(result["suite"], result["neighbours"]),
    )


def example_text(name) -> str:
    """A bundled example's lines, to fill the text box."""
    try:
        return teach_data.example_lines(name) if name else ""
    except TeachError:
        return ""
