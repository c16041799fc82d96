"""What the timer trigger does on each tick (declared in functions/reconcile_timer.py).

With a work queue: find the releases still due after the grace their own scheduled messages had,
and put one work message per release on the queue (the queue trigger reconciles them, spread over
instances). Without one: advance every due release here, within a time budget. Either way, each
rollout not yet ended is looked at first: it starts the sites whose turn has come.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared import bootstrap, telemetry

log = logging.getLogger("release_controller.timer")


def reconcile_timer(timer: func.TimerRequest, context: func.Context) -> None:
    container = bootstrap.container()
    settings = container.settings

    def adopt_invocation() -> None:
        # The Python worker forwards a thread's log records only when the thread names the invocation
        # (its `context.thread_local_storage`): without this, alerts raised on the worker threads would
        # never reach Application Insights.
        context.thread_local_storage.invocation_id = context.invocation_id

    try:
        container.service.reconcile_rollouts()
    except Exception as exc:  # rollouts are looked at again on the next tick; releases go on regardless
        log.error("rollouts not reconciled: %s", exc)
    work_queue = container.parts.get("work_queue")
    if work_queue is not None:
        sent = container.service.dispatch_due(
            work_queue,
            period_seconds=settings.reconcile_period_seconds,
            grace_seconds=settings.dispatch_grace_seconds,
            budget_seconds=settings.reconcile_budget_seconds,
        )
        log.info(
            "dispatch tick%s: %d due, %d sent, %d waiting for their scheduled message, %d errors",
            " (past due)" if timer.past_due else "",
            sent.due,
            len(sent.sent),
            sent.waiting_for_their_message,
            len(sent.errors),
        )
        for release_id, error in sent.errors:
            log.error("release %s: work message not sent: %s", release_id, error)
        if telemetry.enabled():
            try:
                telemetry.gauges(due=sent.due, queue_depth=work_queue.depth())
            except Exception as exc:  # a gauge is never worth failing the tick
                log.warning("work queue depth not read: %s", exc)
        return
    report = container.service.reconcile_due(
        budget_seconds=settings.reconcile_budget_seconds,
        concurrency=settings.reconcile_concurrency,
        on_worker_start=adopt_invocation,
    )
    log.info(
        "reconcile tick%s: %d reconciled, %d errors, %d left for the next tick",
        " (past due)" if timer.past_due else "",
        len(report.reconciled),
        len(report.errors),
        len(report.skipped_for_budget),
    )
    for release_id, error in report.errors:
        log.error("release %s not reconciled: %s", release_id, error)
    telemetry.gauges(due=len(report.reconciled) + len(report.errors) + len(report.skipped_for_budget))
