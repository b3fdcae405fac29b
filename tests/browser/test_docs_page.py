"""The docs page at / in headless Chromium: it renders the live /api/public/spec."""

from __future__ import annotations

import shutil

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def test_docs_page_renders_live_spec(gateway, browser, tmp_path):
    import httpx

    spec = httpx.get(f"{gateway.url}/api/public/spec").json()
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{gateway.url}/")
    page.wait_for_function("document.querySelectorAll('#routes tbody tr').length > 0")
    rows = page.locator("#routes tbody tr")
    assert rows.count() == len(spec["routes"])
    assert "/v1/chat/completions" in page.locator("#routes").inner_text()
    assert page.locator("#errors tbody tr").count() == len(spec["errors"])
    assert "insufficient_balance" in page.locator("#errors").inner_text()
    assert page.locator("#auth tbody tr").count() == 4
    assert "mock-echo" in page.locator("#models").inner_text()
    assert f"{gateway.url}/v1" in page.locator("#quickstart").inner_text()
    assert "routes" in page.locator("#status").inner_text() and not errors
    page.screenshot(path=str(tmp_path / "docs.png"), full_page=True)
