"""The bedrock channel's pieces: the fake's event-stream frames read by botocore's own parser, the
Converse request mapping, the error mapping, and the channel against the fake (its stream's reader
thread ends when a client leaves)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from pisces.canonical import (
    ChatRequest,
    Message,
    TextPart,
    ThinkingConfig,
    ThinkingPart,
    Tool,
    ToolChoice,
)
from pisces.config import ChannelConfig, parse_config
from pisces.upstreams import build_channel
from pisces.upstreams.bedrock import BedrockChannel, bedrock_error
from pisces.upstreams.bedrock_converse import StreamDecoder, encode_request
from support.fake_bedrock import USAGE, FakeBedrock, event, exception, frame, stream_frames
from support.servers import serving


def parse(data: bytes) -> list:
    buf = EventStreamBuffer()
    buf.add_data(data)
    return list(buf)


def test_frames_are_read_by_botocores_parser():
    msgs = parse(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "héllo"}}))
    assert len(msgs) == 1
    m = msgs[0]
    assert m.headers == {":event-type": "contentBlockDelta", ":content-type": "application/json",
                         ":message-type": "event"}  # fmt: skip
    assert b'"text": "h\\u00e9llo"' in m.payload
    ex = parse(exception("throttlingException", "slow down"))[0]
    assert ex.headers[":message-type"] == "exception" and ex.headers[":exception-type"] == "throttlingException"
    # every frame of a whole answer, concatenated and read back in one buffer
    frames = stream_frames([{"text": "a b c"}], "end_turn")
    assert [m.headers[":event-type"] for m in parse(b"".join(frames))] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]


def test_a_corrupt_frame_fails_botocores_checksum():
    good = frame({":message-type": "event"}, b"{}")
    bad = good[:-5] + bytes([good[-5] ^ 1]) + good[-4:]
    with pytest.raises(ChecksumMismatch):
        parse(bad)


def _req(**kw) -> ChatRequest:
    return ChatRequest(model="m", messages=[Message(role="user", content=[TextPart(text="hi")])], **kw)


def test_anthropic_models_get_top_k_thinking_and_a_max_tokens():
    body = encode_request(_req(top_k=5, temperature=0.5, thinking=ThinkingConfig(effort="low")), "global.anthropic.c")
    assert body["additionalModelRequestFields"] == {"top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert body["inferenceConfig"] == {"maxTokens": 2048 + 4096}  # temperature goes: Anthropic refuses it with thinking
    nova = encode_request(_req(top_k=5, thinking=ThinkingConfig(effort="low")), "amazon.nova-pro-v1:0")
    assert "additionalModelRequestFields" not in nova and "inferenceConfig" not in nova


def test_cache_marks_become_cache_points_and_turns_alternate():
    mark = {"type": "ephemeral"}
    req = ChatRequest(
        model="m",
        system=[TextPart(text="sys", cache_control=mark)],
        messages=[Message(role="user", content=[TextPart(text="a", cache_control=mark)]),
                  Message(role="user", content=[TextPart(text="b")]),
                  Message(role="assistant", content=[ThinkingPart(redacted=True, data="AAEC"), TextPart(text="c")])],
        tools=[Tool(name="t", cache_control=mark)],
    )  # fmt: skip
    body = encode_request(req, "us.anthropic.x")
    point = {"cachePoint": {"type": "default"}}
    assert body["system"] == [{"text": "sys"}, point]
    assert body["messages"][0] == {"role": "user", "content": [{"text": "a"}, point, {"text": "b"}]}
    assert body["messages"][1]["content"][0] == {"reasoningContent": {"redactedContent": b"\x00\x01\x02"}}
    assert body["toolConfig"]["tools"][1] == point


def test_tool_choice_none_sends_no_tools_without_history():
    assert "toolConfig" not in encode_request(_req(tools=[Tool(name="t")], tool_choice=ToolChoice(mode="none")), "x")
    named = encode_request(_req(tools=[Tool(name="t")], tool_choice=ToolChoice(mode="tool", name="t")), "x")
    assert named["toolConfig"]["toolChoice"] == {"tool": {"name": "t"}}


def test_an_image_by_http_url_is_a_400():
    from pisces.canonical import ImagePart

    req = ChatRequest(model="m", messages=[Message(role="user", content=[ImagePart(url="https://x/y.png")])])
    with pytest.raises(Exception) as e:
        encode_request(req, "x")
    assert e.value.status == 400 and "inline" in e.value.message


def _client_error(code: str, status: int, message: str = "m") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "Converse")  # fmt: skip


@pytest.mark.parametrize(
    ("exc", "code", "status", "retryable"),
    [
        (_client_error("ThrottlingException", 429), "rate_limit_exceeded", 429, True),
        (_client_error("throttlingException", 200), "rate_limit_exceeded", 429, True),  # in a stream
        (_client_error("ServiceQuotaExceededException", 400), "rate_limit_exceeded", 429, True),
        (_client_error("ValidationException", 400), "invalid_request", 400, False),
        (_client_error("AccessDeniedException", 403), "upstream_error", 502, True),
        (_client_error("ResourceNotFoundException", 404), "model_not_found", 404, False),
        (_client_error("ServiceUnavailableException", 503), "upstream_error", 502, True),
        (_client_error("ModelTimeoutException", 408), "upstream_timeout", 504, True),
        (_client_error("modelStreamErrorException", 200), "upstream_error", 502, False),
        (_client_error("UnrecognizedClientException", 403), "upstream_error", 502, True),
        (EndpointConnectionError(endpoint_url="http://x"), "upstream_error", 502, True),
        (ReadTimeoutError(endpoint_url="http://x"), "upstream_timeout", 504, False),
    ],
)
def test_error_mapping(exc, code, status, retryable):
    err = bedrock_error(exc, "ch", "model-id", "eu-west-1")
    assert (err.code, err.status, err.retryable) == (code, status, retryable)


def test_region_defaults_to_the_functions(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    ch = build_channel(ChannelConfig(name="b", kind="bedrock", models=["x"]), None)  # type: ignore[arg-type]
    assert isinstance(ch, BedrockChannel) and ch.region == "ap-south-1"
    assert ch.client().meta.region_name == "ap-south-1"


def test_enabled_in_aws_and_off_locally(monkeypatch):
    cfg = parse_config({"channels": [{"name": "b", "kind": "bedrock", "models": ["x"]},
                                     {"name": "m", "kind": "mock", "models": ["mock-echo"]}]})  # fmt: skip
    monkeypatch.delenv("PISCES_BEDROCK", raising=False)
    monkeypatch.delenv("PISCES_MOCK", raising=False)
    assert cfg.available_models() == ["mock-echo"]  # locally: no Bedrock unless configured
    monkeypatch.setenv("PISCES_BEDROCK", "on")
    monkeypatch.setenv("PISCES_MOCK", "off")  # what the deployed stack sets by default
    assert cfg.available_models() == ["x"]


def test_stream_decoder_puts_usage_before_finish():
    d = StreamDecoder()
    assert d.feed({"messageStop": {"stopReason": "max_tokens"}}) == []
    evs = d.feed({"metadata": {"usage": USAGE}})
    assert [e.type for e in evs] == ["usage", "finish"] and evs[1].reason == "length"


async def test_a_stream_left_early_ends_its_reader_thread(local_dynamo):
    with serving(FakeBedrock()) as fake:
        ch = BedrockChannel(ChannelConfig(name="b", kind="bedrock", base_url=fake.url, models=["x"]), None)  # type: ignore[arg-type]
        before = {t.ident for t in threading.enumerate() if t.name.startswith("bedrock-stream")}
        events = ch.stream(_req(), "amazon.nova-fake")
        first = await anext(events)
        assert first.type == "start"
        await events.aclose()  # the client went away after the first event
        for _ in range(500):  # causal: wait for the thread to finish, not for a timer
            alive = [t for t in threading.enumerate() if t.name.startswith("bedrock-stream") and t.ident not in before]
            if not alive:
                break
            await asyncio.sleep(0.01)
        assert not alive


@pytest.mark.parametrize(("region", "geo"), [("us-east-1", "us"), ("eu-west-3", "eu"), ("ap-northeast-1", "apac"),
                                             ("us-gov-west-1", "us-gov"), ("ca-central-1", "ca")])  # fmt: skip
def test_geo_in_a_model_id_is_the_regions_geography(region, geo):
    ch = BedrockChannel(ChannelConfig(name="b", kind="bedrock", region=region, models=["x"]), None)  # type: ignore[arg-type]
    assert ch.model_id("{geo}.amazon.nova-pro-v1:0") == f"{geo}.amazon.nova-pro-v1:0"
    assert ch.model_id("global.anthropic.claude-x") == "global.anthropic.claude-x"


def test_shipped_configuration_serves_bedrock_in_aws(monkeypatch):
    from pathlib import Path

    from pisces.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[2] / "pisces.yaml")
    monkeypatch.delenv("PISCES_BEDROCK", raising=False)
    monkeypatch.delenv("PISCES_MOCK", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY_SECRET_ARN", raising=False)
    local = cfg.available_models()
    assert "mock-echo" in local and "nova-pro" not in local
    monkeypatch.setenv("PISCES_BEDROCK", "on")
    monkeypatch.setenv("PISCES_MOCK", "off")
    deployed = cfg.available_models()
    assert "mock-echo" not in deployed
    for model in ("claude-sonnet-4-5", "claude-haiku-4-5", "nova-pro", "llama-4-maverick", "deepseek-r1"):
        assert model in deployed
        assert cfg.price(model).input > 0 and cfg.price(model).output > 0  # every Bedrock model is priced
    assert [c.name for c in cfg.serving("claude-sonnet-4-5")] == ["bedrock-claude"]  # no Anthropic key here


def test_locally_the_region_is_the_aws_profiles(monkeypatch, tmp_path):
    config = tmp_path / "config"
    config.write_text("[profile work]\nregion = eu-north-1\n")
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "work")
    ch = BedrockChannel(ChannelConfig(name="b", kind="bedrock", models=["x"]), None)  # type: ignore[arg-type]
    assert ch.region == "eu-north-1"
