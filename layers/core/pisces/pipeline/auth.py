"""Authentication: one API key, in any of the three protocols' styles, on every route."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from pisces.errors import PiscesError
from pisces.store.keys import KeyCache, KeyRecord, KeyStore, hash_key

if TYPE_CHECKING:
    from pisces.store.dynamo_http import AsyncDynamo

AUTH_STYLES = [
    {"style": "bearer", "where": "header", "name": "Authorization", "example": "Authorization: Bearer pisces-..."},
    {"style": "anthropic", "where": "header", "name": "x-api-key", "example": "x-api-key: pisces-..."},
    {"style": "gemini", "where": "header", "name": "x-goog-api-key", "example": "x-goog-api-key: pisces-..."},
    {"style": "gemini-query", "where": "query", "name": "key", "example": "?key=pisces-..."},
]


def extract_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The API key from Authorization: Bearer, x-api-key, x-goog-api-key or ?key=, in that order."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    for name in ("x-api-key", "x-goog-api-key"):
        value = headers.get(name)
        if value and value.strip():
            return value.strip()
    value = query.get("key")
    return value.strip() if value and value.strip() else None


class Authenticator:
    def __init__(self, store: KeyStore, cache_seconds: float, db: AsyncDynamo | None = None) -> None:
        self.store = store
        self.cache = KeyCache(cache_seconds)
        self.db = db  # the key read on a cache miss goes over it, on the event loop

    async def authenticate(self, plaintext: str | None) -> KeyRecord:
        if not plaintext:
            raise PiscesError(
                "missing_api_key",
                "You didn't provide an API key. Send it as 'Authorization: Bearer pisces-...', "
                "'x-api-key', 'x-goog-api-key' or '?key='.",
            )
        key_hash = hash_key(plaintext)
        hit, rec = self.cache.get(key_hash)
        if not hit:
            rec = await self.store.get_by_hash_async(key_hash, self.db)
            self.cache.put(key_hash, rec)
        if rec is None:
            # Never echo the key: only a display prefix, as OpenAI does.
            raise PiscesError("invalid_api_key", f"Incorrect API key provided: {display(plaintext)}.")
        if rec.status != "active":
            raise PiscesError("key_revoked", f"The API key {rec.prefix}... has been revoked.")
        return rec


def display(plaintext: str) -> str:
    """A key as it may appear in an error: its first 8 characters, its last 2, the rest starred."""
    if len(plaintext) <= 12:
        return "*" * len(plaintext)
    return plaintext[:8] + "*" * 6 + plaintext[-2:]
