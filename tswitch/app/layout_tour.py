"""The *Guided tour* tab (presenter mode): components, then events (callbacks in :mod:`.tour`).

Large type (:data:`CSS`), previous / next, and ``?tour=N`` in the URL to open step ``N`` (for slides;
``&suite=NAME`` picks the suite).
Step 3 needs one real task vector: the session's first taught task, or the example task taught on the
spot with the *Teach* tab's own path.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ..teach.data import example_names
from . import callbacks, catalogue, teach, text, tour

# the tour is read from the back of a room: large type for its text and controls
CSS = """
#tour-text p, #tour-text li, #tour-switch p, #tour-routed p { font-size: 1.45rem; line-height: 1.55; }
#tour-text h2 { font-size: 2.4rem; }
#tour-position p { font-size: 1.05rem; opacity: 0.8; }
"""


def tour_tab() -> dict:
    c: dict = {"step": gr.State(0)}
    with gr.Row():
        c["prev"] = gr.Button(text.TOUR_PREV, elem_id="tour-prev", scale=1)
        c["position"] = gr.Markdown(tour.position(0), elem_id="tour-position")
        c["next"] = gr.Button(text.TOUR_NEXT, elem_id="tour-next", variant="primary", scale=1)
    c["text"] = gr.Markdown(elem_id="tour-text")
    c["figure"] = gr.Plot(show_label=False, elem_id="tour-figure")
    with gr.Group(visible=False) as c["switch_box"]:
        c["alpha"] = gr.Slider(0.1, 0.99, step=0.01, value=0.9, label=text.TOUR_ALPHA, elem_id="tour-alpha")
        with gr.Row():
            c["pspar"] = gr.Plot(show_label=False, elem_id="tour-pspar")
            c["bapprox"] = gr.Plot(show_label=False, elem_id="tour-bapprox")
        c["switch_md"] = gr.Markdown(elem_id="tour-switch")
        c["teach_example"] = gr.Button(text.TOUR_TEACH_EXAMPLE, elem_id="tour-teach")
    with gr.Group(visible=False) as c["route_box"]:
        c["input"] = gr.Textbox(label=text.TOUR_INPUT, elem_id="tour-input")
        c["route"] = gr.Button(text.TOUR_ROUTE, elem_id="tour-route")
        c["routed"] = gr.Markdown(elem_id="tour-routed")
        c["weights"] = gr.Plot(show_label=False, elem_id="tour-weights")
    return c


def _show(suite, step, state):
    _, visitor = teach.visitor_of(state)
    taught = teach.STORE.tasks(visitor, suite) if isinstance(suite, str) else []
    md, fig, pos = tour.step_view(suite, step, taught)
    name = tour.STEPS[tour.clamp(step)]
    lo, hi, value = tour.alpha_range(suite) if isinstance(suite, str) else (0.1, 0.99, 0.9)
    return (
        md,
        gr.update(value=fig, visible=fig is not None),
        pos,
        gr.update(visible=name == "switch"),
        gr.update(visible=name == "switch" and not taught),
        gr.update(visible=name == "routing"),
        gr.update(minimum=lo, maximum=hi, value=value),
    )


def _switch(suite, alpha, state):
    _, visitor = teach.visitor_of(state)
    taught = teach.STORE.tasks(visitor, suite) if isinstance(suite, str) else []
    return tour.switch_view(taught[0] if taught else None, alpha)


def _route(suite, value):
    result = callbacks.predict(suite, value, None, "auto-switch", None)
    status, weights, _, _ = callbacks.show_result(result)
    return status, weights


def _teach_example(suite, state, progress=gr.Progress()):
    names = example_names()
    result, state = teach.teach(suite, "", None, names[0] if names else None, "", state, progress)
    return (text.ERROR.format(message=result["error"]) if "error" in result else ""), state


def _from_url(request: gr.Request):
    query = dict(request.query_params) if request is not None else {}
    step = tour.from_url(query)
    suite = query.get("suite")
    pick = gr.update(value=suite) if suite in catalogue.catalogue() else gr.update()
    if step is None:
        return gr.update(), gr.update(), pick
    return gr.Tabs(selected="tour"), step, pick


def wire(demo: gr.Blocks, suite: gr.Dropdown, tabs: gr.Tabs, c: dict, state: gr.State) -> None:
    private: dict[str, Any] = {"api_visibility": "private"}
    shown = [c["text"], c["figure"], c["position"], c["switch_box"], c["teach_example"], c["route_box"], c["alpha"]]
    step = c["step"]

    def show_then_switch(event):
        event.then(_show, [suite, step, state], shown, **private).then(
            _switch, [suite, c["alpha"], state], [c["pspar"], c["bapprox"], c["switch_md"]], **private
        )

    show_then_switch(demo.load(_from_url, None, [tabs, step, suite], **private))
    show_then_switch(c["prev"].click(lambda s: tour.clamp(s - 1), step, step, **private))
    show_then_switch(c["next"].click(lambda s: tour.clamp(s + 1), step, step, **private))
    show_then_switch(suite.change(lambda s: s, step, step, **private))
    show_then_switch(c["teach_example"].click(_teach_example, [suite, state], [c["switch_md"], state], **private))
    c["alpha"].release(_switch, [suite, c["alpha"], state], [c["pspar"], c["bapprox"], c["switch_md"]], **private)
    gr.on([c["route"].click, c["input"].submit], _route, [suite, c["input"]], [c["routed"], c["weights"]], **private)
