#!/bin/bash
# Started by the Lambda Web Adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap) in the task root: the app
# serves HTTP on PORT, the adapter turns API Gateway events into requests and streams the responses.
# The function's code is in the task root; every package it imports (fastapi, uvicorn...) in the layer, /opt/python.
export PYTHONPATH="${LAMBDA_TASK_ROOT:-/var/task}:/opt/python${PYTHONPATH:+:$PYTHONPATH}${LAMBDA_RUNTIME_DIR:+:$LAMBDA_RUNTIME_DIR}"
# Input limits for a client served directly (docs/operations.md, "Input limits"): an idle keep-alive
# connection is closed after PISCES_KEEP_ALIVE_SECONDS; a request head (line and headers) of more than
# PISCES_HEAD_LIMIT_BYTES (16 KiB) is a 431 (pisces_gateway.server: uvicorn's httptools protocol, with
# that bound); the body's own deadline (PISCES_BODY_READ_SECONDS, 30 s) is the gateway's.
# --no-proxy-headers: the gateway reads neither the client's address nor the scheme, so uvicorn need not
# rewrite them from the adapter's X-Forwarded-* on every request.
exec python -m uvicorn pisces_gateway.app:app --host 0.0.0.0 --port "${PORT:-8080}" --no-access-log \
    --http pisces_gateway.server:HttpToolsProtocol --timeout-keep-alive "${PISCES_KEEP_ALIVE_SECONDS:-5}" \
    --no-proxy-headers
