"""The page in a real browser: headless Chromium (Debian's, driven by Playwright) submits a prompt and
sees the answer stream in and the tree grow, with accepted and rejected nodes. The screenshot goes to a
temporary folder, or to $GORGON_SCREENSHOT (reports/serve_page.png was made with
GORGON_SCREENSHOT=reports/serve_page.png), so a test run leaves the checkout clean."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gorgon.config import SpecConfig
from gorgon.serve.app import BackgroundServer, ServeConfig, create_app

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server(default_llm):
    # A CPU-sized EAGLE tree (the shipped heads' default of 48 nodes costs more than it saves on a CPU)
    spec = SpecConfig(method="eagle", eagle_top_k=4, eagle_depth=4, eagle_total_tokens=10)
    config = ServeConfig(spec=spec, baseline_tokens=16)
    with BackgroundServer(create_app(config, llm=default_llm)) as srv:
        yield srv


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium (Debian's chromium package)")
def test_page_streams_answer_and_tree(server, tmp_path):
    screenshot = Path(os.environ.get("GORGON_SCREENSHOT") or tmp_path / "serve_page.png")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(server.url + "/")
            page.wait_for_selector("#method option[value='eagle']", state="attached")
            page.select_option("#method", "eagle")
            page.fill("#prompt", "List the days of the week, separated by commas.")
            page.fill("#max-tokens", "24")
            page.click("#go")
            page.wait_for_selector("#answer[data-done='true']", timeout=60_000)
            answer = page.inner_text("#answer")
            accepted = page.locator("#tree .node.accepted").count()
            rejected = page.locator("#tree .node.rejected").count()
            tps = float(page.inner_text("#tps"))
            speedup = page.inner_text("#speedup")
            stats = page.inner_text("#stats")
            page.wait_for_timeout(1700)  # let the rejected nodes finish fading
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert "Monday" in answer
    assert accepted >= 10 and rejected >= 5, (accepted, rejected)
    assert tps > 0 and speedup.endswith("×")
    assert stats.startswith("eagle:") and "τ" in stats
