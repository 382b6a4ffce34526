"""A real browser: Debian's ``chromium`` driven by Python playwright (never ``playwright install``).

It loads the page served by ``app.py``, runs an example of each suite and checks that the weights
chart and the prediction appear, that a non-image upload gets a message in the page, and that the
other two tabs draw their charts. The text-suite result is saved as a screenshot: to
``$TSWITCH_SCREENSHOT`` when set (``TSWITCH_SCREENSHOT=assets/screenshot.png`` refreshes the README's),
else into the test's temporary folder.
"""

from __future__ import annotations

import os

import pytest
from test_app import app_suites
from test_app_e2e import serve, server_log

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 180_000  # the first request of a suite loads its backbone
TEACH_ENV = {"TSWITCH_TEACH_SECONDS": "20"}  # the served app's fine-tune cap: the path, not the accuracy

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    with serve(extra_env=TEACH_ENV) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.wait_for_selector("#suite")
        yield page
        browser.close()


def choose_suite(page, name: str) -> None:
    page.get_by_role("tab", name="Try it").click()
    current = page.locator("#suite input").input_value()
    if current != name:
        page.locator("#suite input").click()
        page.get_by_role("option", name=name, exact=True).click()


def status(page) -> str:
    return page.locator("#status").inner_text()


def run_example(page, table: str) -> None:
    """Click the first example of ``table`` and wait until its result is drawn."""
    before = status(page)
    page.locator(f"#{table} tbody tr").first.click()
    try:
        page.wait_for_function(
            "(before) => { const s = document.querySelector('#status').innerText; return s.trim() && s !== before; }",
            arg=before,
        )
        for selector in ("#weights-plot .js-plotly-plot", "#neighbours table", "#compare-plot .js-plotly-plot"):
            page.wait_for_selector(selector)
    except Exception as exc:
        raise AssertionError(f"{exc}\nstatus: {status(page)!r}\napp.py log:\n{server_log(page.url)}") from None


def test_text_example_shows_weights_and_prediction(page, tmp_path):
    from tswitch.app import callbacks, catalogue

    suite = app_suites()["text"]
    choose_suite(page, suite)
    run_example(page, "text-examples")
    expected = callbacks.predict(suite, catalogue.get(suite).examples()[0][1], None, "auto-switch", None)
    assert expected["routed_task"] in status(page)
    assert next(iter(expected["prediction"])) in page.locator("#prediction").inner_text()
    assert page.locator("#weights-plot .bars path").count() >= 1  # plotly drew the bars
    page.screenshot(path=os.environ.get("TSWITCH_SCREENSHOT") or str(tmp_path / "screenshot.png"), full_page=True)


def test_image_example_and_a_non_image_upload(page, tmp_path):
    suite = app_suites()["image"]
    choose_suite(page, suite)
    page.wait_for_selector("#image-examples tbody tr")
    run_example(page, "image-examples")
    assert page.locator("#prediction").inner_text().strip()
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not an image")
    page.locator("#image-input input[type=file]").set_input_files(str(not_image))
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('not a readable image')")
    assert "Traceback" not in page.content()


def test_compare_and_inside_tabs_draw(page):
    choose_suite(page, app_suites()["text"])
    page.get_by_role("tab", name="Compare").click()
    page.wait_for_selector("#storage-plot .js-plotly-plot")
    page.get_by_role("tab", name="Inside a switch").click()
    page.wait_for_selector("#density-plot .js-plotly-plot")
    page.wait_for_selector("#mask-plot .js-plotly-plot")


# -- the Teach and Tour tabs ---------------------------------------------------------------------------
SHOTS = os.environ.get("TSWITCH_SCREENSHOTS")  # a folder: README's screenshots of every view (docs/screenshots)


def wait_text(page, selector: str, needle: str) -> None:
    """Wait until ``selector`` exists and its text holds ``needle``."""
    page.wait_for_function(
        "([s, n]) => { const e = document.querySelector(s); return e !== null && e.innerText.includes(n); }",
        arg=[selector, needle],
    )


def shot(page, tmp_path, name: str) -> None:
    folder = SHOTS or str(tmp_path)
    os.makedirs(folder, exist_ok=True)
    page.screenshot(path=os.path.join(folder, f"{name}.png"), full_page=True)


def test_teach_a_task_in_the_browser_and_another_session_does_not_see_it(page, tmp_path):
    import re

    from tswitch.teach.data import example_lines

    suite = app_suites()["text"]
    choose_suite(page, suite)
    page.get_by_role("tab", name="Teach a new task").click()
    page.locator("#teach-lines textarea").fill(example_lines("chat-small-talk"))
    page.locator("#teach-name textarea").fill("browser-task")
    page.locator("#teach-run").click()
    try:
        wait_text(page, "#teach-status", "Before and after")
        page.wait_for_selector("#teach-accuracy .js-plotly-plot")
    except Exception as exc:
        raise AssertionError(f"{exc}\napp.py log:\n{server_log(page.url)}") from None
    status = page.locator("#teach-status").inner_text()
    assert re.search(r"pre-trained \d+\.\d%.*\(Individual\) \d+\.\d%", status), status
    assert re.search(r"[\d,]+ B in the [\w ,]+ layouts?, against [\d,]+ B", page.locator("#teach-switch").inner_text())
    wait_text(page, "#teach-tasks", "browser-task")  # the list is its own output, updated after the status
    assert "browser-task" in page.locator("#teach-tasks").inner_text()
    page.locator("#teach-try textarea").fill("Tell me a joke")
    page.locator("#teach-route").click()
    wait_text(page, "#teach-routed", "Routed to")
    assert "browser-task" in page.locator("#teach-routed").inner_text()
    assert page.locator("#teach-prediction").inner_text().strip()
    shot(page, tmp_path, "teach")

    other = page.context.browser.new_page(viewport={"width": 1400, "height": 1000})  # a new context: a new session
    other.set_default_timeout(TIMEOUT_MS)
    other.goto(page.url)
    other.wait_for_selector("#suite")
    choose_suite(other, suite)
    other.get_by_role("tab", name="Teach a new task").click()
    wait_text(other, "#teach-tasks", "none yet")
    assert "browser-task" not in other.content()
    other.locator("#teach-try textarea").fill("Tell me a joke")
    other.locator("#teach-route").click()
    wait_text(other, "#teach-routed", "teach a task first")
    other.close()


def test_tour_opens_a_step_from_the_url_and_walks(page, tmp_path):
    choose_suite(page, app_suites()["text"])
    base = page.url.split("?")[0]
    page.goto(base + "?tour=4")
    wait_text(page, "#tour-text", "Storage against accuracy")
    page.wait_for_selector("#tour-figure .js-plotly-plot")
    assert "Step 4 of 5" in page.locator("#tour-position").inner_text()
    shot(page, tmp_path, "tour")
    page.locator("#tour-prev").click()
    wait_text(page, "#tour-text", "From a task vector")
    page.locator("#tour-next").click()
    # a click while the last step is still drawing is dropped (Gradio's trigger_mode "once"): wait for it
    wait_text(page, "#tour-text", "Storage against accuracy")
    page.locator("#tour-next").click()
    wait_text(page, "#tour-text", "Auto-Switch")
    page.locator("#tour-input textarea").fill("Tell me a joke")
    page.locator("#tour-route").click()
    wait_text(page, "#tour-routed", "Routed to")
    page.goto(base)
    page.wait_for_selector("#suite")
    for tab, selector, name in (
        ("Compare", "#storage-plot .js-plotly-plot", "compare"),
        ("Inside a switch", "#density-plot .js-plotly-plot", "inside"),
    ):
        page.get_by_role("tab", name=tab).click()
        page.wait_for_selector(selector)
        shot(page, tmp_path, name)
