"""`make dev`: the gateway on http://127.0.0.1:$PORT with an embedded moto DynamoDB and a demo key.

Also serves the admin API on $ADMIN_PORT (default PORT+1) with the token $PISCES_ADMIN_TOKEN
(printed), and tells how to point the `pisces` CLI at the same DynamoDB.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys

import uvicorn

from pisces.config import ConfigError, load_config
from pisces.localaws import LocalDynamo
from pisces.store import dynamo
from pisces.store.keys import KeyStore
from pisces.store.schema import table_name

DEMO_BALANCE = 100 * 1_000_000  # the demo key starts with $100 of credit (micro-dollars)


def main() -> int:
    port = int(os.environ.get("PORT", "3000"))
    admin_port = int(os.environ.get("ADMIN_PORT", str(port + 1)))
    dynamo_port = int(os.environ.get("PISCES_DYNAMO_PORT", "8765"))
    host = os.environ.get("HOST", "127.0.0.1")
    try:
        config = load_config()
    except ConfigError as e:
        print(f"pisces: {e}", file=sys.stderr)
        return 2

    local = LocalDynamo(port=dynamo_port).start()
    store = KeyStore(dynamo.client(), table_name("keys"))
    try:
        demo_key, _ = store.create(
            name="demo", plaintext=os.environ.get("PISCES_DEV_KEY") or None, balance=DEMO_BALANCE
        )
    except ValueError as e:
        print(f"pisces: PISCES_DEV_KEY: {e}", file=sys.stderr)
        local.stop()
        return 2
    os.environ.setdefault("PISCES_ADMIN_TOKEN", "pisces-admin-" + secrets.token_urlsafe(16))

    from pisces_admin.app import create_app as create_admin
    from pisces_gateway.app import create_app

    gateway = create_app(config, store)
    admin = create_admin(store)
    base = f"http://{host}:{port}"
    print(
        f"""
Pisces is running (local: moto DynamoDB at {local.endpoint}, config {os.environ.get("PISCES_CONFIG", "pisces.yaml")})

  gateway    {base}          docs page: {base}/
  models     {", ".join(config.available_models())}
  demo key   {demo_key}

  curl {base}/v1/chat/completions -H "Authorization: Bearer {demo_key}" \\
    -H "Content-Type: application/json" \\
    -d '{{"model": "mock-echo", "messages": [{{"role": "user", "content": "Hello"}}]}}'

  admin API  http://{host}:{admin_port}/admin/keys   token: {os.environ["PISCES_ADMIN_TOKEN"]}
  CLI        AWS_ENDPOINT_URL_DYNAMODB={local.endpoint} pisces keys list
""",
        flush=True,
    )

    async def serve() -> None:
        servers = [
            uvicorn.Server(uvicorn.Config(gateway, host=host, port=port, log_level="warning")),
            uvicorn.Server(uvicorn.Config(admin, host=host, port=admin_port, log_level="warning")),
        ]
        await asyncio.gather(*(s.serve() for s in servers))

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    finally:
        local.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
