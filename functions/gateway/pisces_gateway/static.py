"""The pages the gateway serves itself: the docs page at ``/`` (it renders ``/api/public/spec`` in the
browser), the key holder's console at ``/console`` (``/v1/usage``, ``/v1/usage/requests``) and the icon."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).parent
DOCS_HTML = (_HERE / "docs.html").read_text(encoding="utf-8")
CONSOLE_HTML = (_HERE / "console.html").read_text(encoding="utf-8")
FAVICON = (_HERE / "favicon.ico").read_bytes()
