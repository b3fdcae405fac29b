"""The console at /console in headless Chromium: a real key after real requests shows the numbers
/v1/usage and /v1/usage/requests give; a bad key shows the gateway's error; nothing leaves the gateway."""

from __future__ import annotations

import shutil
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _page(browser, gateway):
    """A fresh tab that records every request it makes and every script error."""
    page = browser.new_page()
    hosts: list[str] = []
    errors: list[str] = []
    page.on("request", lambda req: hosts.append(urlsplit(req.url).netloc))
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, hosts, errors


def _spend(gateway, key: str) -> list[str]:
    ids = []
    for model, text in (("mock-echo", "one two three"), ("mock-echo", "four"), ("gpt-fake", "five six")):
        r = httpx.post(f"{gateway.v1}/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"model": model, "messages": [{"role": "user", "content": text}]}, timeout=30)  # fmt: skip
        assert r.status_code == 200, r.text
        ids.append(r.headers["x-request-id"])
    return ids


def test_console_shows_the_keys_usage(gateway, browser, tmp_path):
    key = gateway.new_key(name="console", monthly_budget=2_000_000, rpm=40)
    ids = _spend(gateway, key)
    page, hosts, errors = _page(browser, gateway)
    page.goto(f"{gateway.url}/console")
    page.fill("#key", key)
    page.click("#open")
    page.wait_for_function("document.getElementById('status').dataset.loaded === '1'")
    u = httpx.get(f"{gateway.v1}/usage", headers={"Authorization": f"Bearer {key}"}).json()

    assert page.inner_text("#balance") == f"${u['balance_usd']}"
    assert page.inner_text("#month-spent") == f"${u['this_month']['spent_usd']}"
    assert f"${u['monthly_budget_usd']}" in page.inner_text("#budget")
    assert page.inner_text("#rpm").endswith("/ 40")
    # per model: each row's cost and requests are the sums of /v1/usage's rows for the model
    for model in ("mock-echo", "gpt-fake"):
        rows = [r for r in u["data"] if r["model"] == model]
        cells = page.locator(f"#models tbody tr[data-model='{model}'] td").all_inner_texts()
        assert cells[1] == str(sum(r["requests"] for r in rows)), cells
        assert cells[2] == f"{sum(r['input_tokens'] for r in rows):,}"
        assert cells[-1] == f"0.{sum(r['cost'] for r in rows):06d}"
    assert page.locator("#total td").all_inner_texts()[-1] == u["total"]["cost_usd"]
    # the chart: one cost bar per day of the range; today's carries today's spend
    bars = page.locator("#chart rect.bar-cost")
    assert bars.count() == 30
    assert int(bars.last.get_attribute("data-cost")) == sum(r["cost"] for r in u["data"] if r["date"] == u["to"])
    tokens = sum(r["input_tokens"] + r["output_tokens"] for r in u["data"] if r["date"] == u["to"])
    assert int(page.locator("#chart rect.bar-tokens").last.get_attribute("data-tokens")) == tokens
    # recent requests: the three, newest first, as /v1/usage/requests gives them
    listed = httpx.get(f"{gateway.v1}/usage/requests", headers={"Authorization": f"Bearer {key}"}).json()["data"]
    shown = page.locator("#requests tbody tr").evaluate_all("rows => rows.map(r => r.dataset.requestId)")
    assert shown == [d["request_id"] for d in listed] and sorted(shown) == sorted(ids)
    first = page.locator("#requests tbody tr").first.locator("td").all_inner_texts()
    assert first[3] == listed[0]["channel"] and first[4] == "200" and first[6] == listed[0]["cost_usd"]

    # a request id looked up: just its row
    page.fill("#lookup", ids[1])
    page.click("#lookup-go")
    page.wait_for_function("document.querySelectorAll('#requests tbody tr.found').length === 1")
    assert page.locator("#requests tbody tr").evaluate_all("rows => rows.map(r => r.dataset.requestId)") == [ids[1]]
    page.fill("#lookup", "req_" + uuid.uuid4().hex)
    page.click("#lookup-go")
    page.wait_for_function("document.getElementById('lookup-status').textContent.startsWith('no record')")

    # the key is in this tab's sessionStorage only, and a reload keeps it there
    assert page.evaluate("sessionStorage.getItem('pisces-key')") == key
    assert page.evaluate("localStorage.length") == 0 and page.evaluate("document.cookie") == ""
    page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
    gateway_host = urlsplit(gateway.url).netloc
    assert set(hosts) == {gateway_host} and not errors


def test_console_shows_a_bad_keys_error(gateway, browser):
    page, hosts, errors = _page(browser, gateway)
    page.goto(f"{gateway.url}/console")
    page.fill("#key", "pisces-this-is-not-a-key")
    page.click("#open")
    page.wait_for_function("!document.getElementById('error').classList.contains('hidden')")
    text = page.inner_text("#error")
    r = httpx.get(f"{gateway.v1}/usage", headers={"Authorization": "Bearer pisces-this-is-not-a-key"})
    assert text.startswith("401 ") and r.json()["error"]["message"] in text and "request id req_" in text
    assert not page.locator("#dash").is_visible()
    assert set(hosts) == {urlsplit(gateway.url).netloc} and not errors


def test_favicon_is_an_icon(gateway):
    r = httpx.get(f"{gateway.url}/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"] == "image/x-icon"
    assert r.content[:4] == b"\x00\x00\x01\x00" and b"PNG" in r.content[:40]
    assert httpx.head(f"{gateway.url}/console").status_code == 200
