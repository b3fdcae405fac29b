"""The SDK clients a test makes, closed when the test ends (the ``clients`` fixture of tests/conftest.py).

A client that is only dropped keeps its pooled connections until the garbage collector gets to it,
often during another test, and its sockets are collected unclosed: a ResourceWarning there, an error
under the suite's ``error::ResourceWarning``. So a test asks ``clients`` for each client it uses::

    def test_x(gateway, clients):
        c = clients.openai(gateway.v1, key)
        clients.anthropic(gateway.url, key).messages.create(...)

and every one of them is closed at teardown, whatever the test did with it. An SDK's async client
(``openai.AsyncOpenAI``, a google-genai client's ``.aio``) must be closed on its own event loop:
a test uses it as ``async with``.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import anthropic
    import httpx
    import openai
    from google import genai


class _Closeable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closeable)


class Clients:
    """Makes clients and closes all of them at ``close()`` (or at the end of a ``with``)."""

    def __init__(self) -> None:
        self._stack = ExitStack()

    def closing(self, client: C) -> C:
        """``client`` (anything with ``close()``), to be closed with the others."""
        self._stack.callback(client.close)
        return client

    def openai(self, base_url: str, api_key: str, **kw: Any) -> openai.OpenAI:
        """An openai client that never retries (``max_retries=`` says otherwise)."""
        import openai

        return self.closing(openai.OpenAI(base_url=base_url, api_key=api_key, **{"max_retries": 0, **kw}))

    def anthropic(self, base_url: str, api_key: str | None = None, **kw: Any) -> anthropic.Anthropic:
        """An anthropic client that never retries (``auth_token=`` instead of a key for Bearer)."""
        import anthropic

        return self.closing(anthropic.Anthropic(base_url=base_url, api_key=api_key, **{"max_retries": 0, **kw}))

    def gemini(self, base_url: str, api_key: str, **options: Any) -> genai.Client:
        """A google-genai client; ``options`` are its ``HttpOptions`` (api_version, retry_options...).
        Its ``.aio`` is not closed here: a test that uses it closes it on its loop (``async with``)."""
        from google import genai
        from google.genai import types

        return self.closing(genai.Client(api_key=api_key, http_options=types.HttpOptions(base_url=base_url, **options)))

    def httpx(self, **kw: Any) -> httpx.Client:
        import httpx

        return self.closing(httpx.Client(**kw))

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
