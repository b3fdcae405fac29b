"""Headless Debian Chromium for the docs page's tests (Playwright cannot download its own here)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

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


@pytest.fixture(scope="module")  # not session: a live sync Playwright holds an event loop in the main thread
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")  # not session: a live sync Playwright holds an event loop in the main thread
def load_docs(browser: Any) -> Callable[..., tuple[Any, Any]]:
    """``load_docs(url, **context_options)``: a new context and page on the docs page at ``url``, once
    it has rendered the live spec."""

    def load(url: str, **context: Any) -> tuple[Any, Any]:
        ctx = browser.new_context(**context)
        page = ctx.new_page()
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#models tbody tr').length > 0")
        return ctx, page

    return load
