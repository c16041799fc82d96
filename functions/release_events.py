"""Service Bus topic trigger: release events from CI.

Valid, proven and allowed event -> a release (a repeated delivery is a no-op). Anything else — not
valid, unsigned or forged, not allowed by the policy, an id reused for another plan, or a body the
controller cannot process at all — is stored with the reason (app setting values withheld) and the
message completes: bad input is never redelivered forever. Only a storage outage raises, so Service
Bus redelivers later (and dead-letters after MaxDeliveryCount).

What it does is in ``shared/triggers/events.py``, imported on the first message.
"""

from __future__ import annotations

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("release_events")
@bp.service_bus_topic_trigger(
    arg_name="msg",
    topic_name="%RELEASE_EVENTS_TOPIC%",
    subscription_name="%RELEASE_EVENTS_SUBSCRIPTION%",
    connection="ServiceBusConnection",
    is_sessions_enabled=True,
)
def release_events(msg: func.ServiceBusMessage) -> None:
    from shared.triggers import events

    events.release_events(msg)
