"""Requests in the current Anthropic Messages API's shape, for the unit and contract tests: what Claude
Code 2.1.332 sends (captured from the real CLI by tests/cli) and every content block and top-level field
of the API (anthropic-sdk-python, src/anthropic/types: MessageParam, MessageCreateParams)."""

from __future__ import annotations

import json
from typing import Any

# The first request Claude Code 2.1.332 makes for `claude -p` (tests/cli), cut down: its anthropic-beta,
# its query (?beta=true), its fields; the environment goes in a system message after the user's turn.
CLAUDE_CODE_BETA = ("claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,"
                    "mid-conversation-tool-changes-2026-07-01,thinking-token-count-2026-05-13,"
                    "advanced-tool-use-2025-11-20,effort-2025-11-24")  # fmt: skip
ENVIRONMENT = "# Environment\nPrimary working directory: /tmp/work"
CLAUDE_CODE_BODY: dict[str, Any] = {
    "model": "claude-fake",
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>\nAttribution\n</system-reminder>\n"},
                                     {"type": "text", "text": "hello from Claude Code"}]},
        {"role": "system", "content": [{"type": "text", "text": ENVIRONMENT, "cache_control": {"type": "ephemeral"}}]},
    ],
    "system": [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332.8bc; cc_entrypoint=sdk-cli;"},
        {"type": "text", "text": "You are a Claude agent.", "cache_control": {"type": "ephemeral"}},
    ],
    "tools": [
        {"name": "Bash", "description": "Run a command",
         "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}},
        {"name": "DeferredToolPlaceholder", "description": "Deferred", "defer_loading": True,
         "input_schema": {"type": "object", "properties": {}}},
    ],
    "metadata": {"user_id": json.dumps({"device_id": "d7c1", "account_uuid": "", "session_id": "623e"})},
    "max_tokens": 32000,
    "thinking": {"type": "adaptive", "display": "omitted"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "output_config": {"effort": "high"},
    "stream": True,
}  # fmt: skip

# Every content block of the current API's MessageParam (anthropic-sdk-python src/anthropic/types), in turns.
CITED = {"type": "char_location", "cited_text": "Paris is the capital.", "document_index": 0,
         "document_title": "Atlas", "start_char_index": 0, "end_char_index": 21}  # fmt: skip
SEARCH_RESULT = {"type": "search_result", "source": "https://atlas.example/paris", "title": "Atlas: Paris",
                 "content": [{"type": "text", "text": "Paris is the capital of France."}],
                 "citations": {"enabled": True}}  # fmt: skip
EVERY_BLOCK: list[dict[str, Any]] = [
    {"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Paris is the capital."},
         "title": "Atlas", "context": "An old atlas", "citations": {"enabled": True},
         "cache_control": {"type": "ephemeral"}},
        {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": "Lyon is big."}]},
         "title": "Notes"},
        {"type": "document", "source": {"type": "file", "file_id": "file_011"}},
        {"type": "image", "source": {"type": "file", "file_id": "file_012"}},
        {"type": "container_upload", "file_id": "file_013"},
        SEARCH_RESULT,
        {"type": "text", "text": "What is the capital?"},
    ]},
    {"role": "assistant", "content": [
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
        {"type": "text", "text": "Paris is the capital.", "citations": [CITED]},
        {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {"query": "capital"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": [
            {"type": "web_search_result", "url": "https://atlas.example", "title": "Atlas",
             "encrypted_content": "EqgfCioIARgBIiQ3"}]},
        {"type": "tool_use", "id": "toolu_01", "name": "ToolSearch", "input": {"query": "select:Cron"}},
    ]},
    {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_01", "content": [
            {"type": "tool_reference", "tool_name": "CronCreate"},
            {"type": "search_result", "source": "tool-docs", "title": "Cron", "content": [
                {"type": "text", "text": "CronCreate schedules a prompt."}]},
        ]},
        {"type": "text", "text": "Now schedule it."},
    ]},
    {"role": "system", "content": [{"type": "text", "text": "From now on, answer in French."}]},
]  # fmt: skip
TOP_LEVEL = {"container": "container_011", "service_tier": "auto", "inference_geo": "us",
             "cache_control": {"type": "ephemeral"},
             "mcp_servers": [{"type": "url", "url": "https://mcp.example/sse", "name": "atlas"}],
             "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}}  # fmt: skip
