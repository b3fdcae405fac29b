"""``handler``: one reconciliation pass over the Keys table, on an EventBridge schedule.

A hold older than ``PISCES_HOLD_MAX_AGE_SECONDS`` (the gateway function's timeout and a minute) is
released with an ``abandoned`` usage record, exactly once (:mod:`pisces.store.reconcile`).
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger

from pisces.store import dynamo
from pisces.store.reconcile import DEFAULT_MAX_AGE_SECONDS, Reconciler
from pisces.store.schema import table_name

logger = Logger(service="pisces-reconciler")


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    older_than = float(os.environ.get("PISCES_HOLD_MAX_AGE_SECONDS") or DEFAULT_MAX_AGE_SECONDS)
    reconciler = Reconciler(dynamo.client(), table_name("keys"), table_name("usage"))
    summary = reconciler.run(older_than=older_than).summary()
    logger.info("reconciled", extra=summary)
    return summary
