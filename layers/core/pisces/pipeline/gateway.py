"""The gateway's long-lived state: configuration, key store, authenticator, channels and router.

Built once per process (per Lambda container) and shared by every request.
"""

from __future__ import annotations

import httpx

from pisces.config import Config
from pisces.pipeline.auth import Authenticator
from pisces.pipeline.billing import Billing
from pisces.pipeline.idempotency import Idempotency
from pisces.pipeline.lifecycle import Lifecycle
from pisces.pipeline.routing import Router
from pisces.store import dynamo
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
        self.keys = key_store or KeyStore(dynamo.client(), table_name("keys"))
        db = self.keys.client
        self.usage = UsageStore(db, table_name("usage"))
        self.billing = Billing(config, Ledger(db, self.keys.table, self.usage.table))
        self.responses = ResponseStore(db, table_name("responses"), config.limits.responses_retention_days)
        self.idempotency = Idempotency(table_name("idempotency"), db, config.limits.idempotency_hours)
        self.http = http or new_http_client()
        self.auth = Authenticator(self.keys, config.limits.key_cache_seconds)
        self.channels = {c.name: build_channel(c, self.http) for c in config.channels}
        self.router = Router(config, self.channels)
        self.images = ImageStore()  # generated images (S3), handed out as presigned URLs
        self.lifecycle = Lifecycle(self)

    def model_owner(self, model: str) -> str:
        serving = self.config.serving(model)
        return serving[0].kind if serving else "pisces"

    async def aclose(self) -> None:
        await self.http.aclose()
