"""Local AWS: an embedded moto server with Pisces's DynamoDB tables and its images bucket (S3), for
`make dev` and the tests."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

import boto3

from pisces.store.schema import create_tables

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _OneAtATime:
    """WSGI wrapper: one request at a time. DynamoDB applies each write to an item atomically;
    moto's server does not under concurrent requests (1,000 concurrent increments of one counter
    from 20 threads ended at 994 here), and the gateway's money depends on it."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self.lock:
            return list(self.app(environ, start_response))


class _MotoServer:
    """moto's WSGI app, served by uvicorn (through a2wsgi) on a thread of this process.

    Not moto's own ThreadedMotoServer: werkzeug's server closes the connection after every answer
    (``Connection: close``), so each DynamoDB call paid a TCP handshake and a thread, where DynamoDB
    keeps a client's connections alive. Under uvicorn the gateway's kept-alive connections stay open
    (for longer than a client keeps an idle one: the client always closes first)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.error: BaseException | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        import uvicorn
        from a2wsgi import WSGIMiddleware
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        from pisces.localmoto import install

        install()  # transactions that cost the same however large the tables grow
        app = WSGIMiddleware(_OneAtATime(DomainDispatcherApplication(create_backend_app)), workers=8)  # type: ignore[arg-type]
        config = uvicorn.Config(app, host=self.host, port=self.port, log_config=None, log_level="warning",
                                access_log=False, lifespan="off", http="h11", loop="asyncio",
                                timeout_keep_alive=75)  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"moto-{self.port}", daemon=True)
        self._thread.start()
        while not self._server.started and self._thread.is_alive():
            self._thread.join(0.01)
        if not self._server.started and self.error is None:
            self.error = SystemExit(1)  # uvicorn gave up (it says why on its logger): the port is taken

    def _run(self) -> None:
        try:
            self._server.run()
        except BaseException as e:  # uvicorn exits (SystemExit) when the port is taken
            self.error = e

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)


def _moto_server(host: str, port: int) -> _MotoServer:
    return _MotoServer(host, port)


class LocalDynamo:
    """A moto server on loopback; ``start`` points this process's boto3 at it and creates the tables."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self._server = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalDynamo:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access lines
        server = _moto_server(self.host, self.port)
        server.start()
        if server.error is not None:
            why = "the port is in use" if isinstance(server.error, SystemExit) else str(server.error)
            raise OSError(f"moto DynamoDB could not listen on {self.endpoint}: {why}") from server.error
        self._server = server
        for k, v in FAKE_CREDENTIALS.items():
            os.environ.setdefault(k, v)
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = self.endpoint
        create_tables(self.client())
        self.create_images_bucket()
        return self

    def create_images_bucket(self) -> None:
        """The images bucket in the same server (moto serves S3 too); this process's S3 points there."""
        from pisces.store.images import bucket_name, s3_client

        os.environ["AWS_ENDPOINT_URL_S3"] = self.endpoint
        s3_client.cache_clear()
        s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket=bucket_name())

    def client(self) -> object:
        return boto3.client("dynamodb", endpoint_url=self.endpoint, region_name="us-east-1")

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
