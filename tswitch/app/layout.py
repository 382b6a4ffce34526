"""The page: one ``gr.Blocks`` with three tabs, then the event wiring (gradio's ``demo/dashboard`` shape).

Callbacks live in :mod:`.callbacks` (*Try it*) and :mod:`.views` (*Compare*, *Inside a switch*);
this module only places components and connects events. Try-it events take their inputs
unprocessed (``preprocess=False``) so uploads are judged by :mod:`tswitch.inputs`, not by gradio's
image decoder. The one public endpoint is ``predict``; every other event is private.
"""

from __future__ import annotations

import os

import gradio as gr

from ..inputs import MAX_IMAGE_BYTES
from . import callbacks, catalogue, layout_teach, layout_tour, text, views

CONCURRENCY = 2  # forwards at a time: the CPU Space has 2 cores, and one suite serves all visitors
MAX_QUEUE = 64  # waiting requests beyond this are refused at once rather than left to time out


def on_gpu(fn):
    """``spaces.GPU(fn)`` on Hugging Face ZeroGPU hardware (``$SPACES_ZERO_GPU``), else ``fn``."""
    if not os.environ.get("SPACES_ZERO_GPU"):
        return fn
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(fn)


def _predict(suite, text, image, method, k, progress=gr.Progress()):  # names: the API's parameters
    return callbacks.predict(suite, text, image, method, k, progress)


_predict.__doc__ = callbacks.predict.__doc__
predict = on_gpu(_predict)


def _inside(suite, progress=gr.Progress()):
    return views.inside_view(suite, progress)


def _try_tab(info):
    """The *Try it* components, as a dict of name -> component."""
    c = {}
    gr.Markdown(text.TRY_INTRO)
    is_text = info is None or info.modality == "text"
    methods = info.methods if info else ["auto-switch"]
    examples = info.examples() if info else []
    with gr.Row():
        with gr.Column(scale=2):
            c["method"] = gr.Radio(
                [(text.METHOD_LABELS[m], m) for m in methods],
                value=methods[0],
                label=text.METHOD,
                visible=len(methods) > 1,
            )
            top = catalogue.max_k(info.name) if info else 1
            c["k"] = gr.Slider(1, max(2, top), step=1, value=min(info.default_k(), top) if info else 1, label=text.K)
            c["text"] = gr.Textbox(
                label=text.TEXT_INPUT,
                placeholder=text.TEXT_PLACEHOLDER,
                lines=4,
                max_lines=8,
                visible=is_text,
                elem_id="text-input",
            )
            c["image"] = gr.Image(
                label=text.IMAGE_INPUT,
                type="filepath",
                sources=["upload", "clipboard"],
                height=220,
                visible=not is_text,
                elem_id="image-input",
            )
            c["run"] = gr.Button(text.RUN, variant="primary", elem_id="run")
            c["text_examples"] = gr.Dataset(
                components=["textbox", "textbox"],
                headers=text.EXAMPLE_HEADERS,
                type="index",
                label=text.EXAMPLES,
                samples=[[t, callbacks.snippet(e)] for t, e in examples] if is_text else [["", ""]],
                samples_per_page=12,
                visible=is_text,
                elem_id="text-examples",
            )
            c["image_examples"] = gr.Dataset(
                components=["textbox", "image"],
                headers=text.EXAMPLE_HEADERS,
                type="index",
                label=text.EXAMPLES,
                samples=[[t, e] for t, e in examples] if not is_text else [["", None]],
                samples_per_page=12,
                visible=not is_text,
                elem_id="image-examples",
            )
        with gr.Column(scale=3):
            c["status"] = gr.Markdown(elem_id="status")
            with gr.Row():
                c["weights"] = gr.Plot(label=text.WEIGHTS, show_label=False, elem_id="weights-plot")
                c["prediction"] = gr.Label(num_top_classes=5, label=text.PREDICTION, elem_id="prediction")
            c["compare_plot"] = gr.Plot(label=text.COMPARISON, show_label=False, elem_id="compare-plot")
            c["compare_table"] = gr.Dataframe(headers=text.COMPARE_HEADERS, interactive=False, wrap=True)
            with gr.Accordion(text.NEIGHBOURS, open=True):
                c["neighbours"] = gr.HTML(elem_id="neighbours")
            with gr.Accordion(text.RAW, open=False):
                c["raw"] = gr.JSON(label=text.RAW, elem_id="raw")
            c["history_table"] = gr.Dataframe(
                headers=text.HISTORY_HEADERS, label=text.HISTORY, interactive=False, wrap=True
            )
    return c


def _compare_tab():
    c = {}
    gr.Markdown(text.COMPARE_INTRO)
    c["storage"] = gr.Plot(label=text.STORAGE_TITLE, show_label=False, elem_id="storage-plot")
    c["table"] = gr.Dataframe(label=text.PER_TASK, interactive=False, wrap=True)
    c["flex"] = gr.Markdown(visible=False)
    with gr.Row():
        c["option"] = gr.Dropdown(label=text.ALPHA_OPTION, visible=False, scale=1)
        c["alpha"] = gr.Slider(0, 1, step=0.01, label=text.ALPHA_SLIDER, scale=3)
    c["alpha_plot"] = gr.Plot(label=text.ALPHA_TITLE, show_label=False)
    c["alpha_md"] = gr.Markdown()
    c["methods"] = gr.Markdown()
    return c


def _inside_tab():
    c = {}
    gr.Markdown(text.INSIDE_INTRO)
    c["density"] = gr.Plot(label=text.DENSITY_TITLE, show_label=False, elem_id="density-plot")
    c["scale"] = gr.Plot(label=text.SCALE_TITLE, show_label=False)
    c["bits"] = gr.Plot(label=text.BITS_TITLE, show_label=False, visible=False, elem_id="bits-plot")
    c["flex_density"] = gr.Plot(
        label=text.FLEX_DENSITY_TITLE, show_label=False, visible=False, elem_id="flex-density-plot"
    )
    with gr.Row():
        c["pulse"] = gr.Plot(label=text.PULSE_TITLE, show_label=False)
        c["pspar"] = gr.Plot(label=text.PSPAR_TITLE, show_label=False)
    with gr.Row():
        c["eq16"] = gr.Plot(label=text.EQ16_TITLE, show_label=False)
        c["eq16_md"] = gr.Markdown()
    with gr.Row():
        c["task"] = gr.Dropdown(label=text.MASK_TASK)
        c["tensor"] = gr.Dropdown(label=text.MASK_TENSOR)
    c["mask_md"] = gr.Markdown()
    with gr.Row():
        c["mask"] = gr.Plot(label=text.MASK_TASK, show_label=False, elem_id="mask-plot")
        c["mask_crop"] = gr.Plot(label=text.SIGN, show_label=False)
    return c


def build_demo(concurrency_limit: int = CONCURRENCY, max_queue: int = MAX_QUEUE) -> gr.Blocks:
    """The app: suites are listed now (manifests only); models load on first use."""
    names = catalogue.names()
    info = catalogue.get(names[0]) if names else None
    with gr.Blocks(title=text.TITLE, analytics_enabled=False) as demo:
        history = gr.State([])
        gr.Markdown(text.HEADER)
        if not names:
            gr.Markdown(text.ERROR.format(message=text.NO_SUITES_PAGE))
        suite = gr.Dropdown(names, value=names[0] if names else None, label=text.SUITE, elem_id="suite")
        with gr.Tabs() as tabs:
            with gr.Tab(text.TAB_TRY, id="try"):
                t = _try_tab(info)
            with gr.Tab(text.TAB_COMPARE, id="compare"):
                cmp = _compare_tab()
            with gr.Tab(text.TAB_INSIDE, id="inside"):
                ins = _inside_tab()
            with gr.Tab(text.TAB_TEACH, id="teach"):
                teach_ui = layout_teach.teach_tab()
            with gr.Tab(text.TAB_TOUR, id="tour"):
                tour_ui = layout_tour.tour_tab()

        # -- Try it: predict (the public API), then show, remember and compare (private) ----------
        inputs = [suite, t["text"], t["image"], t["method"], t["k"]]
        shown = [t["status"], t["weights"], t["prediction"], t["neighbours"]]

        def then_show(event):
            (
                event.success(callbacks.show_result, t["raw"], shown, api_visibility="private")
                .then(
                    callbacks.remember,
                    [history, t["raw"], t["text"], t["image"]],
                    [history, t["history_table"]],
                    preprocess=False,
                    api_visibility="private",
                )
                .then(
                    callbacks.compare_models,
                    [t["raw"], t["text"], t["image"]],
                    [t["compare_plot"], t["compare_table"]],
                    preprocess=False,
                    api_visibility="private",
                )
            )

        then_show(
            gr.on(
                [t["run"].click, t["text"].submit, t["image"].upload],
                predict,
                inputs,
                t["raw"],
                api_name="predict",
                preprocess=False,
            )
        )
        for examples in (t["text_examples"], t["image_examples"]):
            then_show(
                examples.click(
                    callbacks.example_input, [suite, examples], [t["text"], t["image"]], api_visibility="private"
                ).then(predict, inputs, t["raw"], preprocess=False, api_visibility="private")
            )

        # -- a suite is chosen (and at page load): every view follows it ---------------------------
        cleared = [t["raw"], t["compare_plot"], t["compare_table"]] + shown[1:]
        controls = [t["method"], t["k"], t["text"], t["image"], t["text_examples"], t["image_examples"], t["status"]]
        # always_last: a suite picked while the previous one still loads is served once that is done
        follow = {"api_visibility": "private", "trigger_mode": "always_last"}
        gr.on([demo.load, suite.change], callbacks.suite_controls, suite, controls, **follow)
        gr.on([suite.change], callbacks.cleared, None, cleared, **follow)
        alpha_inputs = [suite, cmp["option"], cmp["alpha"]]
        (
            gr.on(
                [demo.load, suite.change],
                views.compare_view,
                suite,
                [cmp["storage"], cmp["table"], cmp["methods"], cmp["flex"], cmp["option"], cmp["alpha"]],
                **follow,
            ).then(views.alpha_view, alpha_inputs, [cmp["alpha_plot"], cmp["alpha_md"]], api_visibility="private")
        )
        gr.on(
            [cmp["option"].input, cmp["alpha"].release],
            views.alpha_view,
            alpha_inputs,
            [cmp["alpha_plot"], cmp["alpha_md"]],
            api_visibility="private",
        )
        mask_inputs, mask_outputs = [suite, ins["task"], ins["tensor"]], [ins["mask"], ins["mask_crop"], ins["mask_md"]]
        (
            gr.on(
                [demo.load, suite.change],
                _inside,
                suite,
                [
                    ins[k]
                    for k in (
                        "density",
                        "scale",
                        "bits",
                        "flex_density",
                        "pulse",
                        "pspar",
                        "eq16",
                        "eq16_md",
                        "task",
                        "tensor",
                    )
                ],
                **follow,
            ).then(views.mask_view, mask_inputs, mask_outputs, api_visibility="private")
        )
        gr.on(
            [ins["task"].input, ins["tensor"].input],
            views.mask_view,
            mask_inputs,
            mask_outputs,
            api_visibility="private",
        )
        layout_teach.wire(demo, suite, teach_ui, on_gpu)
        layout_tour.wire(demo, suite, tabs, tour_ui, teach_ui["state"])
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=max_queue)
    return demo


def launch_options(host: str = "127.0.0.1", port: int = 7860, **extra) -> dict:
    """Keyword arguments of ``demo.launch``: address, the suites' folders (example images are
    served from them), and the upload size limit of :mod:`tswitch.inputs`."""
    return {
        "server_name": host,
        "server_port": port,
        "max_file_size": MAX_IMAGE_BYTES,
        "allowed_paths": [s.path for s in catalogue.catalogue().values()],
        "css": layout_tour.CSS,
        **extra,
    }
