"""Timer trigger: with a work queue, put a message on it for every release whose own scheduled message
is late; without one, advance every due release here (steps, bakes, analysis, swaps) within a time
budget. Every tick also takes the next step of each rollout not yet ended (which sites start).

What a tick does is in ``shared/triggers/timer.py``, imported on the first tick.
"""

from __future__ import annotations

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("reconcile_timer")
@bp.timer_trigger(arg_name="timer", schedule="%RECONCILE_SCHEDULE%", run_on_startup=False, use_monitor=True)
def reconcile_timer(timer: func.TimerRequest, context: func.Context) -> None:
    from shared.triggers import timer as tick

    tick.reconcile_timer(timer, context)
