"""The docs page served at ``/``: it renders ``/api/public/spec`` in the browser."""

from __future__ import annotations

from pathlib import Path

DOCS_HTML = (Path(__file__).parent / "docs.html").read_text(encoding="utf-8")
