"""End to end: ``python app.py`` on a free loopback port, called through ``gradio_client``.

:func:`serve` starts the app as the README says to (a subprocess running ``app.py``); the browser
tests reuse it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager

import pytest
from test_app import ROOT, app_suites

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER_LOGS: dict[str, str] = {}  # url -> log file of the app serving it


@contextmanager
def serve(timeout: float = 180.0, extra_env: dict[str, str] | None = None):
    """Run ``app.py`` on a free loopback port (``extra_env`` added to its environment only); yields its URL,
    stops it afterwards."""
    app_suites()  # builds smoke suites if none exist, and points $TSWITCH_SUITES at them
    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", prefix="tswitch-app-", suffix=".log", delete=False)
    env = {
        **os.environ,
        "PYTHONPATH": ROOT,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        **(extra_env or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "app.py"), "--host", "127.0.0.1", "--port", str(port)],
        cwd=tempfile.gettempdir(),  # app.py finds its suites from any working directory
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode}:\n{_tail(log.name)}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"app.py did not answer within {timeout:.0f} s:\n{_tail(log.name)}")
            time.sleep(0.5)
        SERVER_LOGS[url] = log.name
        yield url
    finally:
        SERVER_LOGS.pop(url, None)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        os.unlink(log.name)


def server_log(url: str) -> str:
    """The end of the log of the app serving ``url`` (for failure messages)."""
    return "".join(_tail(path) for served, path in SERVER_LOGS.items() if url.startswith(served))


def _tail(path: str, n: int = 4000) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()[-n:]


@pytest.fixture(scope="module")
def server():
    with serve() as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


def test_api_has_predict_with_its_five_parameters(client):
    info = client.view_api(print_info=False, return_format="dict")
    # /predict is the suite's endpoint; the teach tab adds its own three (tests/test_app_teach.py)
    assert set(info["named_endpoints"]) == {"/predict", "/teach", "/teach_predict", "/teach_download"}
    names = [p["parameter_name"] for p in info["named_endpoints"]["/predict"]["parameters"]]
    assert names == ["suite", "text", "image", "method", "k"]


def test_predict_text_and_image(client):
    from gradio_client import handle_file

    from tswitch.app import catalogue

    suites = app_suites()
    sentence = catalogue.get(suites["text"]).examples()[0][1]
    result = client.predict(suites["text"], sentence, None, "auto-switch", 3, api_name="/predict")
    assert result["routed_task"] in catalogue.get(suites["text"]).task_names
    assert len(result["neighbours"]) == 3 and 1 <= len(result["prediction"]) <= 5
    image = catalogue.get(suites["image"]).examples()[0][1]
    result = client.predict(suites["image"], None, handle_file(image), "auto-switch", 3, api_name="/predict")
    assert result["routed_task"] in catalogue.get(suites["image"]).task_names
    assert sum(result["weights"].values()) == pytest.approx(1.0)
    for modality, name in suites.items():  # Auto-FlexSwitch, over HTTP, where a suite serves it
        info = catalogue.get(name)
        if "auto-flexswitch" not in info.methods:
            continue
        example = info.examples()[0][1]
        item = (example, None) if modality == "text" else (None, handle_file(example))
        result = client.predict(name, *item, "auto-flexswitch", 3, api_name="/predict")
        assert result["method"] == "auto-flexswitch" and result["routed_task"] in info.task_names, result
        assert len(result["neighbours"]) == 3 and all(n["exemplar"] is None for n in result["neighbours"])


def test_bad_requests_answer_with_an_error_and_the_app_keeps_serving(client, tmp_path):
    from gradio_client import handle_file

    suites = app_suites()
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not an image")
    bad = [
        client.predict(suites["image"], None, handle_file(str(not_image)), "auto-switch", 3, api_name="/predict"),
        client.predict(suites["text"], "x" * 1_000_000, None, "auto-switch", 3, api_name="/predict"),
        client.predict(suites["text"], "", None, "auto-switch", 3, api_name="/predict"),
        client.predict("no-such-suite", "hello", None, "auto-switch", 3, api_name="/predict"),
    ]
    assert all(set(r) == {"error"} and "\n" not in r["error"] for r in bad), bad
    ok = client.predict(suites["text"], "the election results are in", None, "auto-switch", 3, api_name="/predict")
    assert "routed_task" in ok


def test_concurrent_clients_each_get_their_own_answer(server):
    """Four clients send different inputs at once; each answer equals the one the same input gets
    alone (no request sees another's merged weights or result)."""
    from gradio_client import Client

    from tswitch.app import catalogue

    suites = app_suites()
    name = suites["text"]
    examples = [text for _, text in catalogue.get(name).examples()]
    inputs = [examples[i % len(examples)] + (f" {i}" if i >= len(examples) else "") for i in range(8)]
    alone = Client(server, verbose=False)
    want = [alone.predict(name, x, None, "auto-switch", 3, api_name="/predict") for x in inputs]
    assert all("routed_task" in w for w in want) and len({w["routed_task"] for w in want}) > 1
    got: dict[int, dict] = {}
    errors = []

    def work(i):
        try:
            c = Client(server, verbose=False)
            for j in (i, i + 4):  # every client sends two inputs; all four clients at once
                got[j] = c.predict(name, inputs[j], None, "auto-switch", 3, api_name="/predict")
        except Exception as exc:  # collected and reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and sorted(got) == list(range(8)), errors
    for j, w in enumerate(want):
        assert got[j]["routed_task"] == w["routed_task"] and got[j]["weights"] == w["weights"], j
        assert got[j]["prediction"].keys() == w["prediction"].keys(), j
        assert all(abs(got[j]["prediction"][k] - w["prediction"][k]) < 1e-5 for k in w["prediction"]), j
