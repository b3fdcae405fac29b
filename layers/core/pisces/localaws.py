"""Local AWS: an embedded moto DynamoDB server with Pisces's tables, for `make dev` and the tests."""

from __future__ import annotations

import logging
import os
import socket

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
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access lines
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()
        for k, v in FAKE_CREDENTIALS.items():
            os.environ.setdefault(k, v)
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = self.endpoint
        create_tables(self.client())
        return self

    def client(self) -> object:
        return boto3.client("dynamodb", endpoint_url=self.endpoint, region_name="us-east-1")

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
