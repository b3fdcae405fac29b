"""An upstream's error message reaches the client only with every credential in it redacted.

Over real HTTP with the official SDKs: each door (OpenAI, Anthropic, Gemini) against each upstream
kind, whose fake's ``fail-quote`` model answers an HTTP error and ``quote-mid`` an error event
mid-stream, both quoting the channel's own key (whole and masked), Bearer tokens, an sk- key and an
x-api-key header line (support.fake_openai.quoting). Then the redaction helper on tricky inputs.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors, types

from pisces.canonical import ChatRequest, ErrorEvent, Message, TextPart
from pisces.config import ChannelConfig
from pisces.upstreams.anthropic import AnthropicChannel
from pisces.upstreams.base import status_error, upstream_message
from pisces.upstreams.redact import MAX_UPSTREAM_MESSAGE, REDACTED, error_kind, passable, redact
from support.fake_openai import QUOTED, QUOTED_MASKED, UPSTREAM_SECRET, quoting

# the upstream model of each kind, as the doors name it, and what its HTTP error / its stream error means
UPSTREAMS = {
    "openai": ("", "Incorrect API key provided", "The server had an error"),
    "anthropic": ("claude-", "invalid x-api-key", "Internal server error"),
    "gemini": ("gemini-", "API key not valid", "Internal error encountered"),
}
KINDS = list(UPSTREAMS)


def assert_clean(text: str, meaning: str) -> None:
    """Nothing quoted reached the client; the upstream's meaning and the redaction marks did."""
    for secret in (*QUOTED, UPSTREAM_SECRET[:8], UPSTREAM_SECRET[8:-4], "Bearer sk-", "Bearer tok_"):
        assert secret not in text, f"{secret!r} leaked in {text}"
    assert REDACTED in text and meaning in text, text


def message_of(text: str) -> str:
    """The upstream's message inside a client's error text (a pisces request id may hold any digits)."""
    found = re.search(r'upstream: [^"]*', text)
    assert found, text
    return found.group()


# --- the OpenAI door ------------------------------------------------------------------------------


@pytest.fixture
def oai(gateway, clients) -> openai.OpenAI:
    return clients.openai(gateway.v1, gateway.key)


@pytest.mark.parametrize("kind", KINDS)
def test_openai_door_http_error(oai, kind):
    prefix, meaning, _ = UPSTREAMS[kind]
    with pytest.raises(openai.InternalServerError) as e:
        oai.chat.completions.create(model=f"{prefix}fail-quote", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 502
    assert_clean(e.value.response.text, meaning)
    assert UPSTREAM_SECRET[-4:] not in e.value.response.json()["error"]["message"]


@pytest.mark.parametrize("kind", KINDS)
def test_openai_door_http_error_before_a_stream(oai, kind):
    prefix, meaning, _ = UPSTREAMS[kind]
    with pytest.raises(openai.InternalServerError) as e:
        list(oai.chat.completions.create(model=f"{prefix}fail-quote", messages=[{"role": "user", "content": "x"}],
                                         stream=True))  # fmt: skip
    assert_clean(e.value.response.text, meaning)


@pytest.mark.parametrize("kind", KINDS)
def test_openai_door_error_mid_stream(oai, kind):
    prefix, _, meaning = UPSTREAMS[kind]
    got = []
    with pytest.raises(openai.APIError) as e:
        for chunk in oai.chat.completions.create(
            model=f"{prefix}quote-mid", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            got.append(chunk)
    assert got, "the chunk before the error reached the client"
    assert_clean(json.dumps(e.value.body) + e.value.message, meaning)
    assert UPSTREAM_SECRET[-4:] not in e.value.message


# --- the Anthropic door ---------------------------------------------------------------------------


@pytest.fixture
def claude(gateway, clients) -> anthropic.Anthropic:
    return clients.anthropic(gateway.url, gateway.key)


@pytest.mark.parametrize("kind", KINDS)
def test_anthropic_door_http_error(claude, kind):
    prefix, meaning, _ = UPSTREAMS[kind]
    with pytest.raises(anthropic.InternalServerError) as e:
        claude.messages.create(model=f"{prefix}fail-quote", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "api_error"
    assert_clean(e.value.response.text, meaning)


@pytest.mark.parametrize("kind", KINDS)
def test_anthropic_door_http_error_before_a_stream(claude, kind):
    prefix, meaning, _ = UPSTREAMS[kind]
    stream = claude.messages.stream(model=f"{prefix}fail-quote", max_tokens=5,
                                    messages=[{"role": "user", "content": "x"}])  # fmt: skip
    with pytest.raises(anthropic.APIStatusError) as e, stream as s:
        list(s.text_stream)
    assert_clean(json.dumps(e.value.body) + e.value.message, meaning)


@pytest.mark.parametrize("kind", KINDS)
def test_anthropic_door_error_mid_stream(claude, kind):
    prefix, _, meaning = UPSTREAMS[kind]
    got: list[str] = []
    stream = claude.messages.stream(model=f"{prefix}quote-mid", max_tokens=5,
                                    messages=[{"role": "user", "content": "x"}])  # fmt: skip
    with pytest.raises(anthropic.APIStatusError) as e, stream as s:
        got.extend(s.text_stream)
    assert got == ["partial"], "the text before the error reached the client"
    assert_clean(json.dumps(e.value.body) + e.value.message, meaning)
    assert UPSTREAM_SECRET[-4:] not in e.value.body["error"]["message"]


# --- the Gemini door ------------------------------------------------------------------------------


@pytest.fixture
def gem(gateway, clients) -> genai.Client:
    return clients.gemini(gateway.url, gateway.key, retry_options=types.HttpRetryOptions(attempts=1))


@pytest.mark.parametrize("kind", KINDS)
def test_gemini_door_http_error(gem, kind):
    prefix, meaning, _ = UPSTREAMS[kind]
    with pytest.raises(errors.ServerError) as e:
        gem.models.generate_content(model=f"{prefix}fail-quote", contents="x")
    assert (e.value.code, e.value.status) == (502, "INTERNAL")
    assert_clean(json.dumps(e.value.details) + e.value.message, meaning)


@pytest.mark.parametrize("kind", KINDS)
def test_gemini_door_http_error_before_a_stream(gem, kind):
    prefix, meaning, _ = UPSTREAMS[kind]
    with pytest.raises(errors.ServerError) as e:
        list(gem.models.generate_content_stream(model=f"{prefix}fail-quote", contents="x"))
    assert_clean(json.dumps(e.value.details) + e.value.message, meaning)


@pytest.mark.parametrize("kind", KINDS)
def test_gemini_door_error_mid_stream(gem, kind):
    prefix, _, meaning = UPSTREAMS[kind]
    got: list[str] = []
    with pytest.raises(errors.APIError) as e:
        for chunk in gem.models.generate_content_stream(model=f"{prefix}quote-mid", contents="x"):
            got.append(chunk.text or "")
    assert got == ["partial"], "the chunk before the error reached the client"
    assert_clean(json.dumps(e.value.details) + e.value.message, meaning)
    assert UPSTREAM_SECRET[-4:] not in e.value.message


# --- every byte of a stream, read without an SDK ----------------------------------------------------


def _openai_stream(gateway, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "x"}], "stream": True}
    return httpx.post(f"{gateway.v1}/chat/completions", json=body, headers={"Authorization": f"Bearer {gateway.key}"},
                      timeout=15)  # fmt: skip


def _anthropic_stream(gateway, model: str) -> httpx.Response:
    body = {"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "stream": True}
    return httpx.post(f"{gateway.url}/v1/messages", json=body, headers={"x-api-key": gateway.key}, timeout=15)


def _gemini_stream(gateway, model: str) -> httpx.Response:
    body = {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}
    return httpx.post(f"{gateway.url}/v1beta/models/{model}:streamGenerateContent", params={"alt": "sse"},
                      json=body, headers={"x-goog-api-key": gateway.key}, timeout=15)  # fmt: skip


DOORS: dict[str, Callable[..., httpx.Response]] = {
    "openai": _openai_stream, "anthropic": _anthropic_stream, "gemini": _gemini_stream,
}  # fmt: skip


@pytest.mark.parametrize("door", list(DOORS))
@pytest.mark.parametrize("kind", KINDS)
def test_no_byte_of_a_stream_quotes_a_credential(gateway, door, kind):
    prefix, _, meaning = UPSTREAMS[kind]
    r = DOORS[door](gateway, f"{prefix}quote-mid")
    assert r.status_code == 200 and "partial" in r.text
    assert_clean(r.text, meaning)
    assert UPSTREAM_SECRET[-4:] not in message_of(r.text)


# --- the channel: a stream's error event with a message that cannot be trusted ----------------------


class _Body(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


async def _stream_of(error: dict, monkeypatch) -> list:
    monkeypatch.setenv("PISCES_TEST_REDACT_KEY", "sk-ant-api03-channelOwnKey-ZZZZ9999")
    events = [{"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "model": "x",
                                                    "content": [], "usage": {"input_tokens": 1}}},
              {"type": "error", "error": error}]  # fmt: skip
    sse = [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events]

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=_Body(sse))

    cfg = ChannelConfig(name="a", kind="anthropic", base_url="http://upstream.invalid/v1",
                        api_key_env="PISCES_TEST_REDACT_KEY",
                        headers={"x-custom-token": "custom-header-credential"})  # fmt: skip
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        req = ChatRequest(model="x", messages=[Message(role="user", content=[TextPart(text="hi")])])
        return [ev async for ev in AnthropicChannel(cfg, http).stream(req, "x")]


async def test_a_stream_error_event_is_redacted_by_the_channel(monkeypatch):
    msg = "Overloaded; your key sk-ant-api03-channelOwnKey-ZZZZ9999 and token custom-header-credential"
    got = await _stream_of({"type": "overloaded_error", "message": msg}, monkeypatch)
    err = got[-1]
    assert isinstance(err, ErrorEvent) and err.status == 529
    assert err.message == f"upstream: Overloaded; your key {REDACTED} and token {REDACTED}"


async def test_a_stream_error_event_too_long_is_withheld(monkeypatch):
    got = await _stream_of({"type": "api_error", "message": "x" * 2000}, monkeypatch)
    assert got[-1] == ErrorEvent(
        code="upstream_error", status=502,
        message="upstream: the stream failed (upstream_error, HTTP 502); its message was withheld",
    )  # fmt: skip


# --- the redaction helper ---------------------------------------------------------------------------

KEY = UPSTREAM_SECRET  # sk-fake-upstream-secret-0123456789


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the channel's own key: whole, twice, in brackets and quotes, URL-encoded, glued to words
        (f"key {KEY} and again {KEY}.", f"key {REDACTED} and again {REDACTED}."),
        (f'("{KEY}")', f'("{REDACTED}")'),
        (f"got:{KEY}!", f"got:{REDACTED}!"),
        # quoted partially: OpenAI's mask, a middle piece, the last 4 after dots or alone, the first 4 masked
        (f"Incorrect API key provided: {QUOTED_MASKED}.", f"Incorrect API key provided: {REDACTED}."),
        (f"it was {KEY[-16:-2]}", f"it was {REDACTED}"),  # "secret-01234567"
        ("upstream secret: the word-like pieces of a key stay", "upstream secret: the word-like pieces of a key stay"),
        (f"key ending in ...{KEY[-4:]} was refused", f"key ending in {REDACTED} was refused"),
        (f"key ending in {KEY[-4:]}", f"key ending in {REDACTED}"),
        (f"key {KEY[:4]}****", f"key {REDACTED}"),
        # Bearer tokens, whatever the case and spacing; the prose around them stays
        ("you sent credential Bearer abc.def-ghi_jkl", f"you sent credential Bearer {REDACTED}"),
        ("bearer\tXYZ123, then", f"bearer\t{REDACTED}, then"),
        ("Authorization: Bearer t0k3n", f"Authorization: Bearer {REDACTED}"),
        ("Authorization: Basic dXNlcjpwYXNz", f"Authorization: Basic {REDACTED}"),
        ("Missing bearer token in the Authorization header", "Missing bearer token in the Authorization header"),
        ("Bearer authentication is required", "Bearer authentication is required"),
        # keys by their look
        ("use sk-proj-AbCdEf123456 or sk-ant-api03-XyZ_987-654", f"use {REDACTED} or {REDACTED}"),
        ("masked sk-proj-****************wxyz", f"masked {REDACTED}"),
        ("AIzaSyA-1234567890abcdefghijklmnopqrstu is not valid", f"{REDACTED} is not valid"),
        ("client key pisces-Ab3dEfGh1234 was sent", f"client key {REDACTED} was sent"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln here", f"jwt {REDACTED} here"),
        # headers and parameters: the name stays, the value goes
        ("x-api-key: abc123", f"x-api-key: {REDACTED}"),
        ('{"x-goog-api-key": "abc123", "other": 1}', f'{{"x-goog-api-key": "{REDACTED}", "other": 1}}'),
        ("GET /v1/models?key=abc123&alt=sse", f"GET /v1/models?key={REDACTED}&alt=sse"),
        ("api_key=abc123.", f"api_key={REDACTED}."),
        ("API-Key = 'hunter2hunter2'", f"API-Key = '{REDACTED}'"),
        ("access_token=abc&token=def", f"access_token={REDACTED}&token={REDACTED}"),
        # nothing to redact: ordinary words that merely resemble a pattern
        ("The model `gpt-4o` does not exist; see the task-force and risk-free docs.",
         "The model `gpt-4o` does not exist; see the task-force and risk-free docs."),
        ("max_tokens: 4096 > 1024; the latest key rotation", "max_tokens: 4096 > 1024; the latest key rotation"),
        ("", ""),
    ],
)  # fmt: skip
def test_redact(text, expected):
    assert redact(text, [KEY]) == expected
    assert redact(redact(text, [KEY]), [KEY]) == expected, "redacting twice changes nothing"


def test_redact_secrets_of_any_shape():
    assert redact("short k3y, k3yboard", ["k3y"]) == f"short {REDACTED}, k3yboard"  # a short key: alone only
    assert redact("a/b+c==secretvalue!", ["a/b+c==secretvalue"]) == f"{REDACTED}!"
    assert redact("enc a%2Fb%2Bc%3D%3Dsecretvalue", ["a/b+c==secretvalue"]) == f"enc {REDACTED}"
    assert redact("nothing here", [None, "", "  "]) == "nothing here"
    # the longer secret first: one that contains another leaves no piece of itself
    assert redact("xx-longer-secret-value-1", ["longer-secret", "xx-longer-secret-value-1"]) == REDACTED


def test_passable():
    assert not passable("") and not passable("   ") and not passable(None) and not passable("upstream: ")
    assert passable("x" * (MAX_UPSTREAM_MESSAGE - 1)) and not passable("x" * MAX_UPSTREAM_MESSAGE)
    assert not passable("bell \x07 in it") and passable("two\nlines\r\n\tindented")


def test_error_kind():
    assert error_kind(b'{"error": {"message": "m", "type": "invalid_request_error", "code": "x"}}') == (
        "invalid_request_error"
    )
    assert error_kind(b'{"type": "error", "error": {"type": "authentication_error"}}') == "authentication_error"
    assert error_kind(b'{"error": {"code": 400, "status": "INVALID_ARGUMENT"}}') == "INVALID_ARGUMENT"
    assert error_kind(b'[{"error": {"code": 503, "status": "UNAVAILABLE"}}]') == "UNAVAILABLE"
    assert error_kind(b'{"error": {"type": "sk-proj-AbCdEf1234567"}}') is None  # a key is no error type
    assert error_kind(b'{"error": {"type": "two words"}}') is None
    assert error_kind(b"<html>bad gateway</html>") is None and error_kind(b"\xff") is None


def test_upstream_message():
    assert upstream_message(401, quoting("Nope."), "authentication_error", [KEY]).startswith("upstream: Nope. ")
    assert KEY not in upstream_message(401, quoting("Nope."), None, [KEY])
    assert upstream_message(500, "") == "upstream answered HTTP 500"
    assert upstream_message(502, "x" * 500, "api_error") == (
        "upstream answered HTTP 502 (api_error); its message was withheld"
    )


def test_status_error_redacts_and_keeps_its_meaning():
    err = status_error(400, f"bad field; Bearer {KEY}", kind="invalid_request_error", secrets=[KEY])
    assert (err.code, err.status, err.retryable) == ("invalid_request", 400, False)
    assert err.message == f"upstream: bad field; Bearer {REDACTED}"
    err = status_error(429, "slow down, key=abcdef", "7")  # no secrets given: the patterns still apply
    assert err.retry_after == 7 and err.message == f"upstream: slow down, key={REDACTED}"
