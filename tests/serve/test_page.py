"""The web page at / in a real headless Chromium: pick a real bin photo, see the count and a bar per count."""

from __future__ import annotations

import shutil
from pathlib import Path

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
