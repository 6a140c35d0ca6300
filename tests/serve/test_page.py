"""The web page at / in a real headless Chromium: pick a real bin photo, see the count and a bar per count."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium package is needed (apt-get install chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_page_shows_no_result_before_a_photo(browser, open_server):
    """Open / and pick nothing: no result shows (no empty image labelled "the photo sent", no empty "Count"), only the
    drop area and the fields; the screenshot is saved to test-artifacts/serve-page-first-open.png."""
    page = browser.new_page(viewport={"width": 900, "height": 700})
    page.goto(f"{open_server.url}/")
    page.wait_for_selector("#drop")
    assert page.is_visible("#drop")
    assert not page.is_visible("#result") and not page.is_visible("#photo") and not page.is_visible("#count")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-page-first-open.png"), full_page=True)
    page.close()


def test_page_counts_a_picked_photo(browser, open_server, abid_root):
    """Open /, pick a real bin photo in the file input: the photo shows, the count (1-5) appears with five
    probability bars, one marked best; the screenshot is saved to test-artifacts/serve-page.png."""
    page = browser.new_page(viewport={"width": 900, "height": 700})
    page.goto(f"{open_server.url}/")
    page.set_input_files("#file", str(abid_root / "bin-images" / "00585.jpg"))
    page.wait_for_selector("#result:not([hidden])", timeout=30_000)
    assert page.inner_text("#count") in {"1", "2", "3", "4", "5"}
    assert page.locator("#bars .bar").count() == 5
    assert page.locator("#bars .bar.best").count() == 1
    assert page.evaluate("document.getElementById('photo').naturalWidth") > 0
    assert page.inner_text("#error") == ""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-page.png"), full_page=True)
    page.close()


@pytest.mark.parametrize("expected", ["3", "12"])
def test_page_checks_a_recorded_quantity(browser, open_server, abid_root, expected):
    """Type a recorded quantity, pick a real photo: the page asks /v1/reconcile and shows the decision with
    P(count = recorded) and P(record right) beside the count; the decision is the server's for the same photo and quantity
    (12 is outside the model's counts: always review)."""
    photo = abid_root / "bin-images" / "00588.jpg"
    want = httpx.post(
        f"{open_server.url}/v1/reconcile?expected_quantity={expected}", content=photo.read_bytes(), headers={"content-type": "image/jpeg"}
    ).json()
    page = browser.new_page()
    page.goto(f"{open_server.url}/")
    page.fill("#expected", expected)
    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#reconciled:not([hidden])", timeout=30_000)
    assert page.get_attribute("#decision", "class") == want["decision"]
    assert page.inner_text("#decision").startswith(want["decision"])
    assert f"P(count = {expected}) = {100 * want['match_probability']:.1f}%" in page.inner_text("#match")
    assert f"P(record right) = {100 * want['record_correct_probability']:.1f}%" in page.inner_text("#match")
    assert page.inner_text("#count") == str(want["count"])
    if expected == "12":
        assert want["decision"] == "review"
    page.close()


def test_page_shows_an_open_top_count_as_k_plus(browser, start_server, open_top_artifact, abid_root):
    """A model whose top class is "4 or more": the page shows 4+, its bar labelled 4+ and marked best."""
    server = start_server(model=open_top_artifact)
    page = browser.new_page()
    page.goto(f"{server.url}/")
    page.set_input_files("#file", str(abid_root / "bin-images" / "00585.jpg"))
    page.wait_for_selector("#result:not([hidden])", timeout=30_000)
    assert page.inner_text("#count") == "4+"
    assert page.inner_text("#bars .bar.best span") == "4+"
    page.close()
