"""Queue trigger: reconcile the one release a work message names.

The timer and every save put these messages on the work queue (one per due release, visible at its
due time), so the Functions platform spreads reconciles over as many instances as the queue needs.
host.json sets the batch size, the concurrency and the poison queue's threshold.

What it does is in ``shared/triggers/worker.py``, imported on the first message.
"""

from __future__ import annotations

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("reconcile_worker")
@bp.queue_trigger(arg_name="msg", queue_name="%WORK_QUEUE_NAME%", connection="WorkQueue")
def reconcile_worker(msg: func.QueueMessage) -> None:
    from shared.triggers import worker

    worker.reconcile_worker(msg)
