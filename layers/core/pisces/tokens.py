"""A counted token estimate that works offline (no tokenizer download): words and punctuation marks.

Used by the mock upstream for its usage figures, and wherever a provider's own count is missing.
It is an estimate, close to BPE counts for English prose (within ~30%), and deterministic.
"""

from __future__ import annotations

import json
import re

from pisces.canonical import ChatRequest, ImagePart, TextPart, ThinkingPart, ToolCallPart, ToolResultPart

TOKEN_PATTERN = re.compile(r"\w{1,4}|[^\w\s]")
IMAGE_TOKENS = 85  # OpenAI's flat cost of a low-detail image


def estimate_text(text: str) -> int:
    return len(TOKEN_PATTERN.findall(text))


def estimate_request(req: ChatRequest) -> int:
    n = sum(estimate_text(p.text) for p in req.system)
    for m in req.messages:
        n += 3  # role and separators
        for p in m.content:
            if isinstance(p, TextPart):
                n += estimate_text(p.text)
            elif isinstance(p, ImagePart):
                n += IMAGE_TOKENS
            elif isinstance(p, ToolCallPart):
                n += estimate_text(p.name) + estimate_text(p.arguments)
            elif isinstance(p, ToolResultPart):
                n += sum(estimate_text(c.text) if isinstance(c, TextPart) else IMAGE_TOKENS for c in p.content)
            elif isinstance(p, ThinkingPart):
                n += estimate_text(p.text)
    for t in req.tools:
        n += estimate_text(t.name) + estimate_text(t.description or "") + estimate_text(json.dumps(t.parameters))
    return n
