"""What the queue trigger does with a work message (declared in functions/reconcile_worker.py).

A message names one due release; the worker reconciles it if it is due (one read when it is not:
a duplicate, or a release that moved on). A message this controller did not write is logged and
completes: it is never retried. A storage outage or a release that kept changing raises, so the
queue makes the message visible again and, after host.json's ``maxDequeueCount``, moves it to the
poison queue; the timer re-finds the release in the due index either way.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared import bootstrap
from shared.adapters.work_queue import BadWorkMessage, decode

log = logging.getLogger("release_controller.worker")


def reconcile_worker(msg: func.QueueMessage) -> None:
    try:
        ref = decode(msg.get_body())
    except BadWorkMessage as exc:
        log.error("work message %s dropped: %s", (msg.id or "")[:64], exc)
        return
    result = bootstrap.get_service().work(ref)
    log.info("release %s: %s (%s)", ref.release_id, result.outcome, result.phase.value if result.phase else "-")
