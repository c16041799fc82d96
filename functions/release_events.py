"""Service Bus topic trigger: release events from CI.

Valid event -> a release (a repeated delivery is a no-op). Invalid event -> stored with its body and
the reason, and the message completes: bad input is never redelivered forever. Storage outage ->
raise, so Service Bus redelivers later (and dead-letters after MaxDeliveryCount).
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared import bootstrap
from shared.ports import RejectedEvent, ReleaseIdConflict

bp = func.Blueprint()
log = logging.getLogger("release_controller.events")


@bp.function_name("release_events")
@bp.service_bus_topic_trigger(
    arg_name="msg",
    topic_name="%RELEASE_EVENTS_TOPIC%",
    subscription_name="%RELEASE_EVENTS_SUBSCRIPTION%",
    connection="ServiceBusConnection",
    is_sessions_enabled=True,
)
def release_events(msg: func.ServiceBusMessage) -> None:
    service = bootstrap.get_service()
    body = msg.get_body()
    try:
        result = service.ingest(body, message_id=msg.message_id, source="serviceBus")
    except ReleaseIdConflict as exc:
        # Same id, different plan: not retryable. Keep it, with why, and complete the message.
        service.store.save_rejected(
            RejectedEvent(
                received_at=service.clock.now(),
                source="serviceBus",
                message_id=msg.message_id,
                reason=str(exc),
                errors=[("releaseId", "is already used by a different release")],
                body=body,
                details={"existingSite": exc.existing_site_key},
            )
        )
        log.warning("release event %s rejected: %s", msg.message_id, exc)
        return
    log.info(
        "release event %s (delivery %s): %s %s",
        msg.message_id,
        msg.delivery_count,
        result.outcome,
        result.release.id if result.release else result.reason,
    )
