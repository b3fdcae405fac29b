"""Upstream channels: one client per provider kind, all speaking the canonical model."""

from __future__ import annotations

import httpx

from pisces.config import ChannelConfig
from pisces.upstreams.anthropic import AnthropicChannel
from pisces.upstreams.base import Channel
from pisces.upstreams.bedrock import BedrockChannel
from pisces.upstreams.gemini import GeminiChannel
from pisces.upstreams.mock import MockChannel
from pisces.upstreams.openai import OpenAIChannel
from pisces.upstreams.openai_responses import OpenAIResponsesChannel

KINDS: dict[str, type[Channel]] = {
    "mock": MockChannel,
    "openai": OpenAIChannel,
    "anthropic": AnthropicChannel,
    "gemini": GeminiChannel,
    "openai-responses": OpenAIResponsesChannel,
    "bedrock": BedrockChannel,
}


def build_channel(cfg: ChannelConfig, http: httpx.AsyncClient) -> Channel:
    return KINDS[cfg.kind](cfg, http)
