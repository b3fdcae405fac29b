"""Channel kind ``anthropic``: the Anthropic Messages API (``base_url`` like https://api.anthropic.com/v1).

Requests and responses go through :mod:`pisces.protocols.anthropic_messages`, the same codec that
serves the Anthropic client door, so cache_control marks and ``provider_options["anthropic"]``
(service_tier, context_management, server tools...) reach the upstream as the client sent them.
The key goes in ``x-api-key``; ``anthropic-version`` is 2023-06-01 unless the channel's ``headers``
say otherwise (``anthropic-beta`` goes there too).
"""

from __future__ import annotations

from pisces.protocols import anthropic_messages
from pisces.upstreams.base import HttpCodecChannel

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicChannel(HttpCodecChannel):
    codec = anthropic_messages
    path = "/messages"
    default_headers = {"anthropic-version": ANTHROPIC_VERSION}

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"x-api-key": key}
