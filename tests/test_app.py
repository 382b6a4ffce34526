"""The app's callbacks, views, charts and catalogue, called as plain functions (no server).

They run on real suites: the committed ``assets/text-minilm`` and ``assets/vision-effnet`` when
present, else the folders in ``$TSWITCH_SUITES``, else smoke suites built once per session into a
temporary folder (:func:`app_suites`; the other app test files reuse it).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tempfile
from functools import cache

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILT = {"text": "text-minilm", "image": "vision-effnet"}


@cache
def app_suites() -> dict[str, str]:
    """``{"text": name, "image": name}`` of suites the app serves, building smoke ones if needed.

    Sets ``$TSWITCH_SUITES`` for this process (and the servers it starts) when it builds."""
    from tswitch.app import catalogue

    catalogue.clear_caches()
    found = {}
    for name, info in catalogue.catalogue().items():
        found.setdefault(info.modality, name)
    missing = [m for m in BUILT if m not in found]
    if missing:
        from tswitch.suites.build import run_build
        from tswitch.suites.spec import get_suite_spec, smoke

        out = tempfile.mkdtemp(prefix="tswitch-app-suites-")
        folders = []
        for modality in missing:
            folder = os.path.join(out, BUILT[modality])
            run_build(smoke(get_suite_spec(BUILT[modality])), folder, log=lambda _: None)
            folders.append(folder)
        os.environ["TSWITCH_SUITES"] = os.pathsep.join(filter(None, [os.environ.get("TSWITCH_SUITES"), *folders]))
        catalogue.clear_caches()
        for name, info in catalogue.catalogue().items():
            found.setdefault(info.modality, name)
    return found


@pytest.fixture(scope="module")
def suites():
    return app_suites()


@pytest.fixture(scope="module")
def text_suite(suites):
    return suites["text"]


@pytest.fixture(scope="module")
def image_suite(suites):
    return suites["image"]


def _one_line_error(result):
    assert set(result) == {"error"}, result
    assert result["error"] and "\n" not in result["error"] and "Traceback" not in result["error"]
    return result["error"]


# -- nothing heavy at import ------------------------------------------------------------------------
def test_import_and_build_load_no_model():
    code = (
        "import sys, app, tswitch.app; from tswitch.app.layout import build_demo; build_demo(); "
        "heavy = [m for m in ('torch', 'transformers', 'timm', 'faiss') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT}
    )


def test_no_arxiv_ids_or_results_typed_into_ui_code():
    folder = os.path.join(ROOT, "tswitch", "app")
    for name in os.listdir(folder):
        if name.endswith(".py"):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                assert not re.search(r"\d{4}\.\d{4,5}", f.read()), f"{name} types an arXiv id"


# -- catalogue ----------------------------------------------------------------------------------------
def test_catalogue_lists_assets_and_extra_folders(tmp_path, suites):
    from tswitch.app import catalogue

    for name in suites.values():
        assert name in catalogue.names()
    assert catalogue.suite_paths(str(tmp_path / "none"), extra=os.pathsep.join([str(tmp_path), ""])) == []
    real = catalogue.get(suites["text"]).path
    assert catalogue.suite_paths(str(tmp_path), extra=os.pathsep.join([real, real])) == [real]
    with pytest.raises(catalogue.UnknownSuite, match=suites["text"]):
        catalogue.get("no-such-suite")


def test_examples_stay_inside_their_suite(tmp_path, image_suite):
    from tswitch.app import catalogue

    info = catalogue.get(image_suite)
    examples = info.examples()
    assert examples and all(os.path.isfile(p) and p.startswith(os.path.realpath(info.path)) for _, p in examples)
    (tmp_path / "in.png").write_bytes(b"x")
    from dataclasses import replace

    from tswitch.suites.manifest import TaskInfo

    task = TaskInfo("t", ("a", "b"), {"name": "x"}, examples=("../../../etc/passwd", "in.png", "missing.png"))
    evil = catalogue.SuiteInfo("evil", str(tmp_path), replace(info.manifest, modality="image", tasks=(task,)))
    assert evil.examples() == [("t", str(tmp_path / "in.png"))]


def test_container_readers_match_the_full_task_read(text_suite):
    from tswitch.app import catalogue
    from tswitch.codec import container

    path, header = catalogue.pack_path(text_suite), catalogue.pack_header(text_suite)
    task = header.tasks[-1].name
    payloads, scales = container.read_task_payloads(path, header, task)
    np.testing.assert_array_equal(container.read_task_scales(path, header, task), scales)
    for j in (0, len(payloads) // 2, len(payloads) - 1):
        assert container.read_tensor_payload(path, header, task, j) == (payloads[j], float(scales[j]), None)
    with pytest.raises(container.PackError):
        container.read_tensor_payload(path, header, task, len(payloads))


# -- predict ------------------------------------------------------------------------------------------
def test_predict_text_matches_the_suite(text_suite):
    from tswitch.app import callbacks, catalogue

    info = catalogue.get(text_suite)
    sentence = info.examples()[0][1]
    result = callbacks.predict(text_suite, sentence, None, "auto-switch", 3)
    assert set(result) >= {"suite", "method", "k", "routed_task", "weights", "neighbours", "prediction"}
    assert result["k"] == 3 and len(result["neighbours"]) == 3
    assert result["routed_task"] in info.task_names
    assert sum(result["weights"].values()) == pytest.approx(1.0)
    probs = list(result["prediction"].values())
    assert 1 <= len(probs) <= 5 and probs == sorted(probs, reverse=True)
    direct = catalogue.runtime(text_suite).route([sentence], k=3)[0]
    # the same answer; the engine may take its one-forward or its merged path (equal to float32 rounding)
    assert result["routed_task"] == direct["routed_task"]
    assert list(result["prediction"]) == list(direct["prediction"])
    assert result["prediction"] == pytest.approx(direct["prediction"], abs=1e-6)
    assert callbacks.predict(text_suite, sentence, None, None, None)["k"] == info.default_k()


def test_predict_image_in_every_form(image_suite):
    from tswitch.app import callbacks, catalogue

    path = catalogue.get(image_suite).examples()[0][1]
    with open(path, "rb") as f:
        data = f.read()
    results = [
        callbacks.predict(image_suite, None, value, "auto-switch", 3)
        for value in (path, {"path": path}, data, Image.open(path))
    ]
    assert all("error" not in r for r in results), results
    assert len({(r["routed_task"], tuple(r["prediction"])) for r in results}) == 1


def test_predict_with_auto_flexswitch(suites):
    """Suites with a FlexSwitch run (``results.json["flex"]``, ``Manifest.flex``) serve it too."""
    from tswitch.app import callbacks, catalogue
    from tswitch.suites.suite import Suite, list_suites

    served = [n for n in catalogue.names() if "auto-flexswitch" in catalogue.get(n).methods]
    committed = [n for n in list_suites() if Suite.open(n).has_flex]
    assert set(committed) <= set(served), "every committed suite with a FlexSwitch run is served with it"
    if not served:  # a checkout without the committed suites (smoke suites have no FlexSwitch run)
        pytest.skip("no served suite has a FlexSwitch run (python -m tswitch flex --collect)")
    for name in served:
        info = catalogue.get(name)
        example = info.examples()[0][1]
        item = (example, None) if info.modality == "text" else (None, example)
        result = callbacks.predict(name, *item, "auto-flexswitch", None)
        assert result["method"] == "auto-flexswitch" and result["k"] == info.manifest.flex.router.k
        assert result["routed_task"] in info.task_names and sum(result["weights"].values()) == pytest.approx(1.0)
        assert all(n["exemplar"] is None and n["centre"] >= 0 for n in result["neighbours"])
        direct = catalogue.runtime(name).route([callbacks.read_input(info, *item)], method="auto-flexswitch")[0]
        assert list(direct["prediction"]) == list(result["prediction"])
        assert direct["prediction"] == pytest.approx(result["prediction"], abs=1e-6)
        status, _, _, neighbours = callbacks.show_result(result)
        assert "K-means centres" in status and "K-means centre" in neighbours
        _, rows = callbacks.compare_models(result, *item)
        assert rows[0][0].startswith("Auto-FlexSwitch")
        top = catalogue.max_k(name, "auto-flexswitch")
        assert top == min(catalogue.MAX_K, catalogue.results(name)["flex"]["routing"]["low_rank"]["entries"])
        assert "C must be" in _one_line_error(callbacks.predict(name, *item, "auto-flexswitch", top + 1))


def _png(width: int, height: int, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height)).save(buf, format="PNG")
    return buf.getvalue()


def test_bad_requests_get_one_line_errors_and_the_app_keeps_serving(tmp_path, text_suite, image_suite):
    from tswitch.app import callbacks

    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(_png(64, 64)[:40])
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png(8000, 8000, "1"))  # 64 M pixels in a few kB
    cases = [
        ("no-such-suite", "hello", None, None, None),
        (None, "hello", None, None, None),
        (text_suite, "", None, None, None),
        (text_suite, "   ", None, None, None),
        (text_suite, "x" * 1_000_000, None, None, None),
        (text_suite, None, None, None, None),
        (text_suite, "hello", None, "no-such-router", None),
        (text_suite, "hello", None, None, 0),
        (text_suite, "hello", None, None, 1.5),
        (text_suite, "hello", None, None, True),
        (text_suite, "hello", None, None, 10_000),
        (image_suite, "a sentence", None, None, None),
        (image_suite, None, str(not_image), None, None),
        (image_suite, None, {"path": str(corrupt)}, None, None),
        (image_suite, None, {"path": str(bomb)}, None, None),
        (image_suite, None, {"url": "data:image/png;base64,!!!"}, None, None),
    ]
    messages = [_one_line_error(callbacks.predict(*case)) for case in cases]
    assert "no-such-suite" in messages[0] and text_suite in messages[0]
    assert "too long" in messages[4] and "too large" in messages[14]
    ok = callbacks.predict(text_suite, "the match ended in a draw", None, None, 3)
    assert "error" not in ok


def test_unexpected_failures_are_one_line_too(monkeypatch, text_suite):
    from tswitch.app import callbacks, catalogue

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nwith a second line")

    monkeypatch.setattr(catalogue, "runtime", broken)
    assert "RuntimeError" in _one_line_error(callbacks.predict(text_suite, "hello", None, None, 3))


def test_runtime_reports_progress_once(text_suite):
    from tswitch.app import catalogue

    catalogue._READY.discard(catalogue.get(text_suite).path)
    steps = []
    suite = catalogue.runtime(text_suite, lambda fraction, desc: steps.append((fraction, desc)))
    assert steps and steps[0][0] == 0 and all(text_suite in d for _, d in steps)
    steps.clear()
    assert catalogue.runtime(text_suite, lambda *a, **k: steps.append(a)) is suite and not steps


# -- showing a result ---------------------------------------------------------------------------------
def test_show_result(text_suite):
    from tswitch.app import callbacks

    result = callbacks.predict(text_suite, "shares fell after the profit warning", None, None, 3)
    status, fig, label, table = callbacks.show_result(result)
    assert result["routed_task"] in status
    assert isinstance(fig, go.Figure) and list(fig.data[0].y) == list(result["weights"].values())
    assert label == result["prediction"]
    assert table.count("<tr>") == 1 + len(result["neighbours"])
    with pytest.warns(UserWarning, match="text is empty"):
        status, fig, label, table = callbacks.show_result({"error": "text is empty"})
    assert "text is empty" in status and fig is None and label is None


def test_neighbours_show_thumbnails_for_images_and_escape_text(image_suite, text_suite):
    from tswitch.app import callbacks

    html = callbacks.neighbours_html(image_suite, [{"task": "t", "distance": 0.5, "exemplar": 0}])
    assert "data:image/png;base64," in html
    html = callbacks.neighbours_html(
        text_suite, [{"task": "<b>", "distance": 0.5, "exemplar": 0, "exemplar_preview": "<script>x</script>"}]
    )
    assert "<script>" not in html and "&lt;b&gt;" in html


def test_compare_models_runs_pretrained_and_each_single_switch(text_suite):
    from tswitch.app import callbacks, catalogue

    sentence = "the new phone has a faster chip"
    result = callbacks.predict(text_suite, sentence, None, None, 3)
    fig, rows = callbacks.compare_models(result, sentence, None)
    suite = catalogue.runtime(text_suite)
    tasks = list(suite.engine.tasks)
    assert len(rows) == 2 + len(tasks) and isinstance(fig, go.Figure)
    assert rows[0][2:] == [*result["prediction"]][:1] + [round(next(iter(result["prediction"].values())), 4)]
    head = suite.heads[result["routed_task"]]
    with torch.no_grad():  # the pre-trained row: the backbone's own weights, no switch at all
        probs = torch.softmax(head(suite.adapter.features(suite.adapter.preprocess([sentence]), None))[0], -1)
    assert rows[1][2] == head.labels[int(probs.argmax())]
    assert rows[1][3] == pytest.approx(float(probs.max()), abs=1e-4)
    assert callbacks.compare_models({"error": "x"}, sentence, None) == (None, [])


def test_history_is_newest_first_and_bounded(text_suite):
    from tswitch.app import callbacks

    result = callbacks.predict(text_suite, "a goal in the last minute", None, None, 3)
    state = []
    for i in range(callbacks.HISTORY_SIZE + 3):
        state, rows = callbacks.remember(state, result, f"input {i}", None)
    assert len(rows) == callbacks.HISTORY_SIZE and rows[0][1] == f"input {callbacks.HISTORY_SIZE + 2}"
    assert callbacks.remember(state, {"error": "x"}, "y", None)[0] == state


# -- choosing a suite and an example ----------------------------------------------------------------
def test_suite_controls_follow_the_modality(text_suite, image_suite):
    from tswitch.app import callbacks, catalogue

    method, k, text_box, image, text_examples, image_examples, status = callbacks.suite_controls(text_suite)
    assert text_box["visible"] and not image["visible"] and text_examples.visible and not image_examples.visible
    assert k["maximum"] == max(2, min(catalogue.MAX_K, len(catalogue.exemplars(text_suite))))
    assert len(text_examples.samples) == len(catalogue.get(text_suite).examples()) and status == ""
    _, _, text_box, image, _, image_examples, _ = callbacks.suite_controls(image_suite)
    assert image["visible"] and not text_box["visible"] and image_examples.visible
    with pytest.warns(UserWarning):
        assert "no-such-suite" in callbacks.suite_controls("no-such-suite")[-1]


def test_example_input(text_suite, image_suite):
    from tswitch.app import callbacks, catalogue

    assert callbacks.example_input(text_suite, 0) == (catalogue.get(text_suite).examples()[0][1], None)
    text_value, image = callbacks.example_input(image_suite, 1)
    assert text_value is None and os.path.isfile(image)
    assert callbacks.example_input(text_suite, 10_000) == ({"__type__": "update"}, {"__type__": "update"})


# -- Compare ------------------------------------------------------------------------------------------
def test_pareto_front():
    from tswitch.app.views import pareto

    points = [
        {"name": n, "bytes": b, "accuracy": a}
        for n, b, a in [("a", 0, 0.5), ("b", 10, 0.8), ("c", 100, 0.7), ("d", 1000, 0.9), ("e", 10, 0.8)]
    ]
    assert pareto(points) == {"a", "b", "d", "e"}


def test_compare_view(text_suite):
    from tswitch.app import catalogue, views
    from tswitch.merging import list_methods

    results = catalogue.results(text_suite)
    storage, table, methods, flex, option, alpha = views.compare_view(text_suite)
    assert storage.layout.xaxis.type == "log"
    assert [r[0] for r in table["value"]["data"]] == [views.method_label(m) for m in results["methods"]]
    assert table["value"]["headers"][1 : 1 + len(results["tasks"])] == results["tasks"]
    urls = {m.name: m.url for m in list_methods()}
    for name in ("ties", "task_arithmetic", "emr_merging", "tall_masks"):
        assert urls[name] in methods
    assert urls["tswitch"] in methods and alpha["value"] == results["choice"]["alpha"]
    fig, summary = views.alpha_view(text_suite, option["value"], 0.0)
    grid = sorted(float(a) for a in results["alpha_grid"][option["value"]])
    row = next(iter(results["alpha_grid"][option["value"]].values()))
    shown = sum(split in row[m] for m in ("t-switch", "auto-switch") for split in ("val", "test"))
    assert f"α = {grid[0]:g}" in summary and len(fig.data) == shown >= 3  # Auto-Switch's grid may hold test only
    sweep = results["choice"].get("k_sweep")
    if sweep:  # the C sweep, every C on both splits
        assert all(
            f"C = {c}: {100 * r['val']:.1f}% val, {100 * r['test']:.1f}% test" in summary for c, r in sweep.items()
        )
    assert views.alpha_view(text_suite, "no-such-option", 0.5) == (None, "")
    # every method with its 95% interval (error bars and a column) and the gain retained
    headers = table["value"]["headers"]
    ci_col, gain_col = headers.index("95% interval"), headers.index("gain retained")
    for row, r in zip(table["value"]["data"], results["methods"].values()):
        lo, hi = r["average_ci"]
        assert lo <= r["average"] <= hi and row[ci_col] == f"{100 * lo:.1f}–{100 * hi:.1f}"
        if r.get("gain_retained") is not None:
            assert row[gain_col] == round(100 * r["gain_retained"], 1)
    assert results["methods"]["individual"]["gain_retained"] == pytest.approx(1.0)
    bars = storage.data[0].error_y
    assert bars.array is not None and all(v >= 0 for v in bars.array) and any(v > 0 for v in bars.array)
    refs = [s.y0 for s in storage.layout.shapes]
    assert results["methods"]["pretrained"]["average"] in refs and results["methods"]["individual"]["average"] in refs
    assert "tie" in methods


# -- Inside a switch ----------------------------------------------------------------------------------
def test_inside_view_numbers_come_from_the_pack(text_suite):
    from tswitch.app import catalogue, views

    density, scale, bits, flex_density, pulse, pspar, eq16, eq16_md, task, tensor = views.inside_view(text_suite)
    report = catalogue.pack_report(text_suite)
    j = len(report["tensors"]) // 2
    spec = report["tensors"][j]
    assert density.data[0].z[0][j] == pytest.approx(spec["tasks"][0]["nnz"] / spec["numel"])
    assert scale.data[0].z[0][j] == pytest.approx(np.log10(catalogue.task_scales(text_suite)[0, j]))
    modules = catalogue.results(text_suite).get("flex", {}).get("modules")
    if modules:  # the suite's FlexSwitch run: learned widths and densities, from results.json
        first = next(iter(modules))
        assert bits["visible"] and flex_density["visible"]
        assert list(bits["value"].data[0].z[0]) == [m["bits"] for m in modules[first]]
        assert list(flex_density["value"].data[0].z[0]) == pytest.approx([m["density"] for m in modules[first]])
    else:
        assert not bits["visible"] and not flex_density["visible"]  # T-Switch: one bit per kept entry
    stored = sum(t["bytes"] for t in report["tasks"])
    sass = sum(t["eq16_bytes"] for t in report["tasks"])
    assert f"{stored:,} B" in eq16_md and f"{sass:,} B" in eq16_md and isinstance(eq16, go.Figure)
    assert f"{1 - stored / sass:.1%} smaller" in eq16_md
    points = sum(len(trace.x) for trace in eq16.data if trace.mode == "markers")
    assert points == sum("eq16_bytes" in c for s in report["tensors"] for c in s["tasks"])
    assert task["choices"] == [t["name"] for t in report["tasks"]] and tensor["value"] in tensor["choices"]


def test_mask_view_counts_what_the_pack_says(text_suite, image_suite):
    from tswitch.app import catalogue, views

    for suite in (text_suite, image_suite):
        header = catalogue.pack_header(suite)
        *_, task, tensor = views.inside_view(suite)
        block, crop, summary = views.mask_view(suite, task["value"], tensor["value"])
        j = [s.name for s in header.tensors].index(tensor["value"])
        nnz = header.tasks[0].nnz[j]
        assert f"{nnz:,} of" in summary
        assert {v for row in crop.data[0].z for v in row} <= {-1.0, 0.0, 1.0}
        assert all(0 <= v <= 1 for row in block.data[0].z for v in row)
    assert views.mask_view(text_suite, None, None) == (None, None, "")
    task, tensor = views.inside_view(text_suite)[-2:]  # the dropdowns of another suite's pack
    assert views.mask_view(image_suite, task["value"], tensor["value"]) == (None, None, "")


def test_block_mean_is_exact_at_the_edges():
    from tswitch.app.views import _block_mean

    values = torch.arange(35, dtype=torch.float32).reshape(5, 7)
    blocks, bh, bw = _block_mean(values, 3)
    assert (bh, bw) == (2, 3) and blocks.shape == (3, 3)
    assert blocks[2, 2] == values[4:, 6:].mean() and blocks[0, 0] == values[:2, :3].mean()


def test_pulse_curves_sort_alphas():
    from tswitch.app import views

    block = {"keep_high": {"0.9": {"average": 0.2}, "0.1": {"average": 0.8}}}
    ((name, (xs, ys)),) = views._curves(block, {"keep_high": "high"}).items()
    assert name == "high" and xs == [0.1, 0.9] and ys == [0.8, 0.2]


# -- charts -------------------------------------------------------------------------------------------
def test_percent_ticks_follow_the_spread_so_labels_differ():
    from tswitch.app.charts import percent_format

    assert percent_format([0.805, 0.81, 0.808, 0.798]) == ".2%"  # printed "81%, 81%, 80%" before
    assert percent_format([0.79, 0.83]) == ".1%" and percent_format([0.1, 0.9]) == ".0%"
    ticks = [0.798 + 0.002 * i for i in range(7)]
    assert len({format(t, percent_format(ticks)[1:]) for t in ticks}) == len(ticks)  # distinct labels


def test_charts_return_figures():
    from tswitch.app import charts

    figs = [
        charts.weights_bar({"a": 0.7, "b": 0.3}, 10, "a"),
        charts.comparison_heatmap(["m1", "m2"], ["x", "y"], [[0.1, 0.9], [0.5, 0.5]]),
        charts.storage_scatter(
            [
                {"name": "a", "label": "A", "bytes": 0, "accuracy": 0.5, "pareto": True},
                {"name": "b", "label": "B", "bytes": 10, "accuracy": 0.7, "pareto": True},
            ],
            0.5,
        ),
        charts.lines({"s": ([0.1, 0.2], [0.5, 0.6])}, "t", "x", marker_x=0.1, marker_label="m"),
        charts.storage_scatter(
            [{"name": "b", "label": "B", "bytes": 10, "accuracy": 0.7, "pareto": True, "ci": [0.65, 0.75]}], 0.5, 0.8
        ),
        charts.tensor_heatmap([[0.1, None]], ["t"], ["w", "b"], "t", "c"),
        charts.eq16_scatter([10, 20], [10, 20], ["a", "b"]),
        charts.mask_heatmap([[1, 0], [-1, 0]], "t", signed=True),
    ]
    assert all(isinstance(f, go.Figure) for f in figs)
    assert list(figs[2].data[0].x) == [10]  # zero bytes cannot sit on a log axis: a line instead


# -- serving --------------------------------------------------------------------------------------
def test_predict_is_wrapped_for_zerogpu_only_there(monkeypatch):
    import types

    from tswitch.app import layout

    def fn():
        return 1

    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert layout.on_gpu(fn) is fn
    fake = types.ModuleType("spaces")
    fake.GPU = lambda f: ("on gpu", f)
    monkeypatch.setitem(sys.modules, "spaces", fake)
    assert layout.on_gpu(fn) is fn  # the package alone is not ZeroGPU hardware
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert layout.on_gpu(fn) == ("on gpu", fn)


def test_launch_options_serve_the_suites_folders(suites):
    from tswitch.app import catalogue
    from tswitch.app.layout import launch_options
    from tswitch.inputs import MAX_IMAGE_BYTES

    options = launch_options("127.0.0.1", 7999)
    assert options["server_port"] == 7999 and options["max_file_size"] == MAX_IMAGE_BYTES
    assert {catalogue.get(n).path for n in suites.values()} <= set(options["allowed_paths"])


def test_layouts_phrase_reads_for_one_or_several_layouts():
    from tswitch.app.text import layouts_phrase

    assert layouts_phrase(["golomb"]) == "golomb layout"
    assert layouts_phrase(["bitmap", "golomb"]) == "bitmap and golomb layouts"
    assert layouts_phrase(["bitmap", "golomb", "sass"]) == "bitmap, golomb and sass layouts"
