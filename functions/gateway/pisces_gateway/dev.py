"""`make dev`: the gateway on http://127.0.0.1:$PORT with an embedded moto DynamoDB and a demo key.

Also serves the admin API on $ADMIN_PORT (default PORT+1) with the token $PISCES_ADMIN_TOKEN
(printed), and writes ``.pisces-dev.env`` (printed too): the exports another terminal needs for the
`pisces` CLI (PATH, the DynamoDB endpoint) and the admin API (its URL, the token).
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import socket
import sys
from pathlib import Path

import uvicorn

from pisces.config import Config, ConfigError, load_config
from pisces.localaws import LocalDynamo, free_port
from pisces.pipeline.routing import disabled_reason
from pisces.store import dynamo
from pisces.store.keys import KeyStore
from pisces.store.schema import table_name

DEMO_BALANCE = 100 * 1_000_000  # the demo key starts with $100 of credit (micro-dollars)
DEFAULT_DYNAMO_PORT = 8765


class PortError(Exception):
    """A port setting `make dev` cannot use; its message is the one line printed after ``pisces: ``."""


def port_in_use(host: str, port: int) -> bool:
    """Whether ``host:port`` cannot be bound now, tried as uvicorn and werkzeug bind (SO_REUSEADDR, so a
    recently closed port in TIME_WAIT counts as free). Only "address in use" counts; other errors raise."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def _port(name: str, default: str) -> int:
    value = os.environ.get(name) or default
    try:
        port = int(value)
    except ValueError:
        raise PortError(f"{name} must be a port number, not {value!r}") from None
    if not 0 < port < 65536:
        raise PortError(f"{name} must be a port number (1-65535), not {port}")
    return port


def check_ports(host: str, port: int, admin_port: int) -> None:
    """Fail before anything starts if the gateway or admin port is taken (uvicorn would only fail later)."""
    if admin_port == port:
        raise PortError(f"ADMIN_PORT {admin_port} is the gateway's PORT too: set ADMIN_PORT to another port")
    for name, value in (("PORT", port), ("ADMIN_PORT", admin_port)):
        try:
            taken = port_in_use(host, value)
        except OSError as e:
            raise PortError(f"{name} {value} on {host}: {e.strerror or e}") from None
        if taken:
            raise PortError(f"{name} {value} is in use on {host}: stop what listens there or set {name}=<port>")


def pick_dynamo_port(taken: set[int]) -> tuple[int, str]:
    """The moto DynamoDB port and a banner note. An explicit ``PISCES_DYNAMO_PORT`` is used or refused;
    the default 8765, when busy, is swapped for a free port (the note says so)."""
    explicit = bool(os.environ.get("PISCES_DYNAMO_PORT"))
    port = _port("PISCES_DYNAMO_PORT", str(DEFAULT_DYNAMO_PORT))
    if explicit and port in taken:
        raise PortError(f"PISCES_DYNAMO_PORT {port} is the gateway's PORT or ADMIN_PORT: pick another port")
    if port not in taken and not port_in_use("127.0.0.1", port):
        return port, ""
    if explicit:
        raise PortError(f"PISCES_DYNAMO_PORT {port} is in use: stop what listens there or pick another port")
    free = free_port()
    while free in taken:
        free = free_port()
    return free, f"  note       port {port} was in use: DynamoDB is on {free} instead (PISCES_DYNAMO_PORT pins one)\n"


def main() -> int:
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # no CloudWatch EMF line per request in a terminal
    os.environ.setdefault("PISCES_LOG_FORMAT", "text")  # one short line per request, not JSON (AWS keeps JSON)
    host = os.environ.get("HOST") or "127.0.0.1"
    try:
        port = _port("PORT", "3000")
        admin_port = _port("ADMIN_PORT", str(port + 1))
        check_ports(host, port, admin_port)
        dynamo_port, dynamo_note = pick_dynamo_port({port, admin_port})
    except PortError as e:
        print(f"pisces: {e}", file=sys.stderr)
        return 2
    try:
        config = load_config()
    except ConfigError as e:
        print(f"pisces: {e}", file=sys.stderr)
        return 2

    try:
        local = LocalDynamo(port=dynamo_port).start()
    except OSError as e:  # taken between the check and moto's bind
        print(f"pisces: {e}", file=sys.stderr)
        return 2
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
    admin_url = f"http://{host}:{admin_port}"
    token = os.environ["PISCES_ADMIN_TOKEN"]
    exports = {
        "PATH": f"{Path(sys.executable).absolute().parent}:$PATH",  # .venv/bin: the `pisces` CLI
        "AWS_ENDPOINT_URL_DYNAMODB": local.endpoint,
        "PISCES_URL": base,
        "PISCES_ADMIN_URL": admin_url,
        "PISCES_ADMIN_TOKEN": token,
        "PISCES_KEY": demo_key,
    }
    env_file = write_env_file(exports)
    print(
        f"""
Pisces is running (local: moto DynamoDB at {local.endpoint}, config {os.environ.get("PISCES_CONFIG", "pisces.yaml")})
{dynamo_note}
  gateway    {base}          docs page: {base}/    console: {base}/console
  models     {", ".join(config.available_models())}
{disabled_lines(config)}  demo key   {demo_key}

  curl {base}/v1/chat/completions -H "Authorization: Bearer {demo_key}" \\
    -H "Content-Type: application/json" \\
    -d '{{"model": "mock-echo", "messages": [{{"role": "user", "content": "Hello"}}]}}'
  curl {base}/v1/images/generations -H "Authorization: Bearer {demo_key}" \\
    -H "Content-Type: application/json" -d '{{"model": "mock-image", "prompt": "A cute kitten"}}'

  admin API  {admin_url}/admin/keys   token: {token}
  curl {admin_url}/admin/keys -H "Authorization: Bearer {token}"

  In another terminal, for the `pisces` CLI and the README's examples (endpoints, token, PATH):
    . {env_file}
  or paste:
    export {" ".join(f'{k}="{v}"' for k, v in exports.items())}
  then: pisces keys list
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
        env_file.unlink(missing_ok=True)
        local.stop()
    return 0


def disabled_lines(config: Config) -> str:
    """The banner's lines for the channels that are off, grouped by what turns them on."""
    by_reason: dict[str, list[str]] = {}
    for c in config.channels:
        if not c.enabled:
            by_reason.setdefault(disabled_reason(c), []).append(c.name)
    return "".join(
        f"  {'disabled' if i == 0 else '':<10} {', '.join(names)}: {reason}\n"
        for i, (reason, names) in enumerate(by_reason.items())
    )


def write_env_file(exports: dict[str, str]) -> Path:
    """``.pisces-dev.env`` (``PISCES_DEV_ENV_FILE`` overrides): the exports another terminal sources to
    reach this server; only its owner may read it (the admin token); removed when `make dev` stops."""
    path = Path(os.environ.get("PISCES_DEV_ENV_FILE") or ".pisces-dev.env").absolute()
    lines = ["# make dev's endpoints, admin token and PATH: `. ./.pisces-dev.env` (removed when it stops)"]
    lines += [f'export {k}="{v}"' for k, v in exports.items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    raise SystemExit(main())
