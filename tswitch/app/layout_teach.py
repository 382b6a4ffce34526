"""The *Teach a new task* tab: its components, then its events (callbacks in :mod:`.teach`).

Public endpoints: ``teach`` (lines -> a new task of the session), ``teach_predict`` (route a sentence
among the suite's tasks and the session's) and ``teach_download`` (the zip of one task). The
session's token lives in a ``gr.State``; gradio_client keeps it per client, like the page per tab.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ..teach.data import example_names
from . import teach, text

TEACH_CONCURRENCY = 4  # teach calls admitted at once: one fine-tunes, the others wait in teach.LINE and see their place


def _teach(suite, lines, upload, example, name, state, progress=gr.Progress()):  # names: the API's parameters
    return teach.teach(suite, lines, upload, example, name, state, progress)


_teach.__doc__ = teach.teach.__doc__


def _teach_predict(suite, text_value, state):
    return teach.predict(suite, text_value, None, state)


_teach_predict.__doc__ = teach.predict.__doc__


def teach_tab() -> dict:
    """Place the tab's components; returns them by name (``"state"``: the session's token)."""
    c: dict = {"state": gr.State(None, delete_callback=teach.forget)}
    gr.Markdown(text.TEACH_INTRO)
    with gr.Row():
        with gr.Column(scale=2):
            c["example"] = gr.Dropdown(example_names(), value=None, label=text.TEACH_EXAMPLE, elem_id="teach-example")
            c["lines"] = gr.Textbox(
                label=text.TEACH_LINES,
                placeholder=text.TEACH_LINES_PLACEHOLDER,
                lines=10,
                max_lines=16,
                elem_id="teach-lines",
            )
            c["upload"] = gr.File(
                label=text.TEACH_UPLOAD, file_types=[".csv", ".tsv", ".txt"], type="filepath", elem_id="teach-upload"
            )
            c["name"] = gr.Textbox(label=text.TEACH_NAME, placeholder=text.TEACH_NAME_PLACEHOLDER, elem_id="teach-name")
            with gr.Row():
                c["run"] = gr.Button(text.TEACH_RUN, variant="primary", elem_id="teach-run")
                c["cancel"] = gr.Button(text.TEACH_CANCEL, variant="stop", elem_id="teach-cancel")
            gr.Markdown(f"#### {text.TEACH_YOUR_TASKS}")
            c["tasks"] = gr.Markdown(text.TEACH_NO_TASKS, elem_id="teach-tasks")
            c["pick"] = gr.Dropdown([], label=text.TEACH_PICK, allow_custom_value=True, elem_id="teach-pick")
            c["download"] = gr.DownloadButton(text.TEACH_DOWNLOAD, elem_id="teach-download")
        with gr.Column(scale=3):
            c["status"] = gr.Markdown(elem_id="teach-status")
            with gr.Row():
                c["accuracy"] = gr.Plot(show_label=False, elem_id="teach-accuracy")
                c["loss"] = gr.Plot(show_label=False, elem_id="teach-loss")
            c["switch"] = gr.Markdown(elem_id="teach-switch")
            c["mask"] = gr.Plot(show_label=False, elem_id="teach-mask")
            c["try"] = gr.Textbox(label=text.TEACH_TRY, placeholder=text.TEACH_TRY_PLACEHOLDER, elem_id="teach-try")
            c["route"] = gr.Button(text.TEACH_ROUTE, elem_id="teach-route")
            c["routed"] = gr.Markdown(elem_id="teach-routed")
            with gr.Row():
                c["weights"] = gr.Plot(show_label=False, elem_id="teach-weights")
                c["prediction"] = gr.Label(num_top_classes=5, label=text.PREDICTION, elem_id="teach-prediction")
            c["neighbours"] = gr.HTML(elem_id="teach-neighbours")
            with gr.Accordion(text.RAW, open=False):
                c["result"] = gr.JSON(label=text.RAW, elem_id="teach-result")
                c["route_result"] = gr.JSON(label=text.RAW)
    return c


def wire(demo: gr.Blocks, suite: gr.Dropdown, c: dict, on_gpu=lambda fn: fn) -> None:
    """Connect the tab's events."""
    private: dict[str, Any] = {"api_visibility": "private"}
    state = c["state"]
    listing = [c["pick"], c["tasks"]]
    taught = (
        c["run"]
        .click(
            on_gpu(_teach),
            [suite, c["lines"], c["upload"], c["example"], c["name"], state],
            [c["result"], state],
            api_name="teach",
            concurrency_id="teach",
            concurrency_limit=TEACH_CONCURRENCY,
        )
        .then(
            teach.show_taught,
            [c["result"], state],
            [c["status"], c["accuracy"], c["loss"], c["switch"], c["mask"]],
            **private,
        )
        .then(teach.task_choices, [suite, state], listing, **private)
    )
    taught.then(teach.download, [suite, c["pick"], state], c["download"], **private)
    c["cancel"].click(teach.cancel, state, c["status"], **private)
    c["example"].input(teach.example_text, c["example"], c["lines"], **private)
    c["pick"].input(teach.download, [suite, c["pick"], state], c["download"], api_name="teach_download")
    gr.on(
        [c["route"].click, c["try"].submit],
        _teach_predict,
        [suite, c["try"], state],
        c["route_result"],
        api_name="teach_predict",
    ).then(
        teach.show_routed, c["route_result"], [c["routed"], c["weights"], c["prediction"], c["neighbours"]], **private
    )
    gr.on([demo.load, suite.change], teach.task_choices, [suite, state], listing, **private)
