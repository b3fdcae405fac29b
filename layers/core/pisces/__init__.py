"""Pisces: the protocol translation core shared by the gateway and admin functions (the Lambda layer)."""

import sys

__version__ = "0.1.0"
GATEWAY_NAME = "Pisces"

# httpx's package imports its command-line client (click, and rich and pygments where installed) when
# it can; no function runs it, and a cold start paid ~0.1 s for it. Marked absent before httpx's first
# import, httpx keeps its own stub (``httpx.main`` says the CLI is not installed). A process that has
# imported httpx already keeps it as it is.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
