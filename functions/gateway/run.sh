#!/bin/bash
# Started by the Lambda Web Adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap) in the task root: the app
# serves HTTP on PORT, the adapter turns API Gateway events into requests and streams the responses.
# The function's own packages (fastapi, uvicorn) are in the task root, the layer's in /opt/python.
export PYTHONPATH="${LAMBDA_TASK_ROOT:-/var/task}:/opt/python${PYTHONPATH:+:$PYTHONPATH}${LAMBDA_RUNTIME_DIR:+:$LAMBDA_RUNTIME_DIR}"
exec python -m uvicorn pisces_gateway.app:app --host 0.0.0.0 --port "${PORT:-8080}" --no-access-log
