"""The docs page at / in headless Chromium: it renders the live /api/public/spec, its tabs work by mouse
and keyboard, its copy buttons copy, its examples are filled with the gateway's base URL, it follows the
system's colour scheme (and a toggle), and it asks no host but the gateway for anything."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.browser


def visible_examples(page: Any) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        "pre.example", "els => els.filter(e => e.checkVisibility()).map(e => ({...e.dataset, code: e.textContent}))"
    )


def test_docs_page_renders_live_spec(gateway, load_docs, tmp_path):
    spec = httpx.get(f"{gateway.url}/api/public/spec").json()
    ctx, page = load_docs(f"{gateway.url}/")
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.reload()
    page.wait_for_function("document.querySelectorAll('#models tbody tr').length > 0")
    assert page.locator("#routes tbody tr").count() == len(spec["routes"])
    routes = page.locator("#routes").inner_text()
    assert "/v1/chat/completions" in routes
    # paths as users write them, never the framework's {model:path}
    assert "/v1beta/models/{model}:generateContent" in routes and "/v1/models/{model}:embedContent" in routes
    assert "/v1beta/models/{model}:streamGenerateContent?alt=sse" in routes and "{model:path}" not in page.content()
    assert page.locator("#errors tbody tr").count() == len(spec["errors"])
    assert "insufficient_balance" in page.locator("#errors").inner_text()
    assert page.locator("#auth tbody tr").count() == 4
    assert page.locator("#models tbody tr").count() == len(spec["catalog"]) == len(spec["models"])
    models = {r.split("\t")[0].split(" ")[0]: r for r in page.locator("#models tbody tr").all_inner_texts()}
    assert "chat" in models["mock-echo"] and "anthropic" in models["mock-echo"] and "$1" in models["mock-echo"]
    assert "embeddings" in models["mock-embed"] and "gemini" in models["mock-embed"]
    assert "images" in models["mock-image"] and "per image" in models["mock-image"]
    assert "gpt-fake" in models and "never-listed" not in models  # a disabled channel's model is not shown
    headers = page.locator("#headers").inner_text()
    for h in ("Idempotency-Key", "X-Request-Id", "Retry-After", "Idempotent-Replayed"):
        assert h in headers
    conv = page.locator("#conv").inner_text()
    assert "Retry-After" in conv and "exponential backoff" in conv and "Idempotency-Key" in conv
    assert "x-goog-api-key" in conv and "X-Request-Id" in conv and "pisces" in conv
    assert f"{gateway.url}" in page.locator("#base").inner_text()
    assert "routes" in page.locator("#status").inner_text() and not errors
    page.screenshot(path=str(tmp_path / "docs.png"), full_page=True)
    ctx.close()


def test_tabs_by_mouse_and_keyboard(gateway, load_docs):
    ctx, page = load_docs(f"{gateway.url}/")
    page.keyboard.press("Tab")  # the first Tab reaches the skip link, which leads to the content
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#main"
    proto = page.locator(".tabs-proto [role=tab]")
    assert proto.all_inner_texts() == ["OpenAI", "Anthropic", "Gemini"]
    shown = visible_examples(page)
    first = [("openai", "chat", "python"), ("conventions", "conventions", "python")]
    assert [(e["protocol"], e["op"], e["lang"]) for e in shown] == first
    page.get_by_role("tab", name="Anthropic").click()
    assert page.get_by_role("tab", name="Anthropic").get_attribute("aria-selected") == "true"
    assert visible_examples(page)[0]["protocol"] == "anthropic"
    # keyboard: the selected tab is the one in the tab order; arrows move and select, Home/End jump
    page.get_by_role("tab", name="Anthropic").focus()
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.textContent") == "Gemini"
    assert page.get_by_role("tab", name="Gemini").get_attribute("aria-selected") == "true"
    assert visible_examples(page)[0]["protocol"] == "gemini"
    page.keyboard.press("Home")
    assert visible_examples(page)[0]["protocol"] == "openai"
    page.keyboard.press("End")
    assert visible_examples(page)[0]["protocol"] == "gemini"
    assert page.locator(".tabs-proto [role=tab][tabindex='0']").count() == 1
    # operation tabs inside the protocol, then one language chosen everywhere
    gemini_panel = page.locator("#protocols [role=tabpanel]:visible").first
    gemini_panel.get_by_role("tab", name="Streaming").click()
    assert visible_examples(page)[0]["op"] == "streaming"
    gemini_panel.get_by_role("tab", name="Go").first.click()
    langs = {e["lang"] for e in visible_examples(page)}
    assert langs == {"go"}, langs
    page.get_by_role("tab", name="Embeddings").click()
    ex = visible_examples(page)[0]
    assert (ex["protocol"], ex["op"], ex["lang"]) == ("gemini", "embeddings", "go")
    page.get_by_role("tab", name="Images").click()  # Gemini's door has no images: the page says where to go
    assert "use the OpenAI door" in page.locator("#protocols [role=tabpanel]:visible").last.inner_text()
    assert page.locator("button.copy").count() == page.locator("pre.example").count()
    ctx.close()


def test_copy_buttons_copy_the_example(gateway, load_docs):
    ctx, page = load_docs(f"{gateway.url}/", permissions=["clipboard-read", "clipboard-write"])
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway.url)
    for name in ("Anthropic", "Tools", "curl"):
        page.locator("#protocols [role=tab]:visible", has_text=re.compile(f"^{name}$")).first.click()
    box = page.locator("#protocols .codebox:visible").first
    code = box.locator("pre").inner_text()
    assert code.startswith(f"curl {gateway.url}/v1/messages") and "x-api-key: $PISCES_API_KEY" in code
    box.get_by_role("button").click()
    page.wait_for_function("document.querySelector('button.copy[data-copied]') !== null")
    assert box.get_by_role("button").get_attribute("data-copied") == "true"
    assert page.evaluate("navigator.clipboard.readText()") == box.locator("pre").text_content()
    ctx.close()


def test_examples_are_filled_and_nothing_leaves_the_gateway(gateway, browser):
    ctx = browser.new_context()
    requests: list[str] = []
    ctx.on("request", lambda req: requests.append(req.url))
    page = ctx.new_page()
    page.goto(f"{gateway.url}/")
    page.wait_for_function("document.querySelectorAll('#models tbody tr').length > 0")
    page.wait_for_load_state("networkidle")
    examples = page.eval_on_selector_all("pre.example", "els => els.map(e => e.textContent)")
    assert len(examples) > 40
    for code in examples:
        assert gateway.url in code and "PISCES_API_KEY" in code
        assert "127.0.0.1:3000" not in code or gateway.url.endswith(":3000")
    assert requests and all(u.startswith(f"{gateway.url}/") for u in requests), requests
    assert sorted(set(requests)) == [f"{gateway.url}/", f"{gateway.url}/api/public/spec"]
    html = httpx.get(f"{gateway.url}/").text
    assert not re.search(r"<link|@import|@font-face|<script[^>]+src=|<img", html)  # one self-contained file
    assert len(html) < 64 * 1024
    ctx.close()


def test_colour_scheme_and_toggle(gateway, load_docs):
    ctx, page = load_docs(f"{gateway.url}/", color_scheme="dark")
    dark_bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert dark_bg == "rgb(13, 17, 23)"  # the system's dark scheme, with no click
    page.locator("#theme").click()
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(251, 252, 253)"
    page.locator("#theme").click()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.reload()
    page.wait_for_function("document.querySelectorAll('#models tbody tr').length > 0")
    assert page.locator("#theme").inner_text() == "Theme: dark"  # remembered
    ctx.close()


def test_response_sample_has_the_shape_of_a_real_answer(gateway, load_docs):
    """The page's unified response example has the keys a real chat completion of this gateway has."""
    ctx, page = load_docs(f"{gateway.url}/")
    text = page.locator("#sample").text_content()
    ctx.close()
    head, _, body = text.partition("\n\n")
    assert head == "X-Request-Id: order-1234"
    sample = json.loads(body)
    r = httpx.post(f"{gateway.v1}/chat/completions", headers={"Authorization": f"Bearer {gateway.key}",
                   "X-Request-Id": "order-1234"}, json={"model": sample["model"], "messages": [
                   {"role": "user", "content": sample["choices"][0]["message"]["content"]}]})  # fmt: skip
    real = r.json()
    assert r.headers["x-request-id"] == "order-1234" == real["pisces"]["request_id"]
    assert set(sample) == set(real) - {"system_fingerprint", "service_tier"}
    assert set(sample["pisces"]) == set(real["pisces"])
    assert set(sample["choices"][0]["message"]) <= set(real["choices"][0]["message"])
    assert sample["choices"][0]["message"]["content"] == real["choices"][0]["message"]["content"]
    assert set(sample["usage"]) <= set(real["usage"])


def test_under_a_stage_prefix_the_examples_keep_it(gateway, browser):
    """Deployed behind API Gateway the page is at /prod/: the examples' base URL keeps the stage."""
    ctx = browser.new_context()
    html = httpx.get(f"{gateway.url}/").text
    spec = httpx.get(f"{gateway.url}/api/public/spec").text
    asked: list[str] = []

    def stage(route: Any) -> None:
        asked.append(route.request.url)
        if route.request.url.endswith("/prod/api/public/spec"):
            route.fulfill(status=200, content_type="application/json", body=spec)
        else:
            route.fulfill(status=200, content_type="text/html", body=html)

    ctx.route(f"{gateway.url}/prod/**", stage)
    page = ctx.new_page()
    page.goto(f"{gateway.url}/prod/")
    page.wait_for_function("document.querySelectorAll('#models tbody tr').length > 0")
    code = page.locator("pre.example").first.text_content()
    assert f'base_url="{gateway.url}/prod/v1"' in code
    assert asked == [f"{gateway.url}/prod/", f"{gateway.url}/prod/api/public/spec"]
    ctx.close()
