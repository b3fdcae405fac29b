"""The gateway's long-lived state: configuration, key store, authenticator, channels and router.

Built once per process (per Lambda container) and shared by every request.
"""

from __future__ import annotations

import httpx

from pisces.config import Config
from pisces.config_source import ConfigSource
from pisces.h1 import tls_context
from pisces.pipeline.auth import Authenticator
from pisces.pipeline.billing import Billing
from pisces.pipeline.idempotency import Idempotency
from pisces.pipeline.lifecycle import Lifecycle
from pisces.pipeline.routing import Router
from pisces.store import dynamo
from pisces.store.dynamo_http import AsyncDynamo
from pisces.store.images import ImageStore
from pisces.store.keys import KeyStore
from pisces.store.ledger import Ledger
from pisces.store.responses import ResponseStore
from pisces.store.schema import table_name
from pisces.store.usage import UsageStore
from pisces.upstreams import build_channel
from pisces.upstreams.base import new_http_client


class Gateway:
    def __init__(
        self, config: Config, key_store: KeyStore | None = None, http: httpx.AsyncClient | None = None
    ) -> None:
        self.config = config
        self.keys = key_store or KeyStore(dynamo.LazyClient(), table_name("keys"))
        # the hot path's DynamoDB (key reads, admission, settlement): on the event loop, kept alive
        self.db = AsyncDynamo.like(key_store.client) if key_store else AsyncDynamo.from_env()
        db = self.keys.client
        self.usage = UsageStore(db, table_name("usage"))
        self.billing = Billing(config, Ledger(db, self.keys.table, self.usage.table, self.db))
        self.responses = ResponseStore(db, table_name("responses"), config.limits.responses_retention_days)
        self.idempotency = Idempotency(table_name("idempotency"), db, config.limits.idempotency_hours)
        self.http = http or new_http_client()
        self.auth = Authenticator(self.keys, config.limits.key_cache_seconds, self.db)
        self.channels = {c.name: build_channel(c, self.http) for c in config.channels}
        self.router = Router(config, self.channels)
        if any((url or "").startswith("https:") for url in (self.db.endpoint, *(c.base_url for c in config.channels))):
            tls_context()  # loaded now, not on the first request (pisces.h1)
        self.images = ImageStore()  # generated images (S3), handed out as presigned URLs
        self.lifecycle = Lifecycle(self)
        self.source: ConfigSource | None = None  # set when the configuration came from an SSM parameter

    async def refresh_config(self) -> None:
        """Before a request: a configuration parameter that changed (pisces.config_source) replaces the
        configuration, its channels and router, between requests (a request under way keeps its own)."""
        if self.source is None:
            return
        config = await self.source.fresh()
        if config is not None:
            channels = {c.name: build_channel(c, self.http) for c in config.channels}
            self.config, self.channels = config, channels
            self.router = Router(config, channels)
            self.billing = Billing(config, self.billing.ledger)

    def model_owner(self, model: str) -> str:
        serving = self.config.serving(model)
        return serving[0].kind if serving else "pisces"

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.db.aclose()
