"""The editor's page of `udaci serve` in a real headless browser (issue #24):
Debian's chromium driven by Playwright's Python package (its own browser
download is not used: `executable_path` points at the system browser). A
summary is typed in, the button pressed, headline candidates appear, and the
page logs no console errors. Needs the default model and chromium."""
import os
import re
import shutil

import pytest

from server_util import Server

CHROMIUM = os.environ.get("UDACI_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SUMMARY = "The city council voted on Tuesday to ban cars from the downtown core starting next year, citing pollution."


@pytest.fixture(scope="module")
def server():
    s = Server("--scheduler-opt", "batch_invariant=1")
    yield s
    assert s.stop() == 0


def test_editor_page_writes_headlines(server):
    assert CHROMIUM, "chromium is not installed (scripts/setup.sh installs it)"
    from playwright.sync_api import expect, sync_playwright

    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url + "/")
            assert page.title().startswith("udaci")
            page.fill("#summary", SUMMARY)
            page.select_option("#candidates", "3")
            page.click("#go")
            # Locator waits (the page's Content-Security-Policy forbids the
            # string evaluation wait_for_function would need).
            page.locator("#results li").nth(2).wait_for(timeout=120_000)
            expect(page.locator("#status")).to_have_text(re.compile(r"^Done in \d+ ms"), timeout=60_000)
            headlines = page.locator("#results li .headline").all_inner_texts()
            metas = page.locator("#results li .meta").all_inner_texts()
            assert len(headlines) == 3 and all(h.strip() and h != "(empty)" for h in headlines), headlines
            assert all(" ms in the engine" in m for m in metas), metas
            assert page.locator("#results li.error").count() == 0
            # An empty summary is refused in the page, without a request.
            page.fill("#summary", "  ")
            page.click("#go")
            assert "Paste a summary" in page.locator("#status").inner_text()
        finally:
            browser.close()
    assert errors == []
