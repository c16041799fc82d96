"""What the Service Bus trigger does with a release event (declared in functions/release_events.py).

Valid, proven and allowed event -> a release (a repeated delivery is a no-op). Anything else — not
valid, unsigned or forged, not allowed by the policy, an id reused for another plan, or a body the
controller cannot process at all — is stored with the reason (app setting values withheld) and the
message completes: bad input is never redelivered forever. Only a storage outage raises, so Service
Bus redelivers later (and dead-letters after MaxDeliveryCount).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import azure.functions as func

from shared import bootstrap
from shared.authority.proofs import EventProof
from shared.authority.redaction import redact_event
from shared.domain.fleet_event import is_rollout
from shared.domain.schema import MAX_EVENT_BYTES
from shared.ports import RejectedEvent, ReleaseIdConflict, StoreUnavailable

log = logging.getLogger("release_controller.events")

# Application properties a publisher sets (releasectl does): the proof of where the event came from.
SIGNATURE, KEY_ID, IDENTITY_TOKEN = "releaseSignature", "releaseKeyId", "releaseIdentityToken"


def _property(msg: func.ServiceBusMessage, name: str) -> str | None:
    properties: Any = getattr(msg, "application_properties", None) or {}
    value = properties.get(name) if isinstance(properties, dict) else None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) and value and len(value) <= 16 * 1024 else None


def _message_id(msg: func.ServiceBusMessage) -> str | None:
    value = msg.message_id
    return value[:256] if isinstance(value, str) and value else None


def release_events(msg: func.ServiceBusMessage) -> None:
    service = bootstrap.get_service()
    body = msg.get_body() or b""
    message_id = _message_id(msg)
    proof = EventProof(
        signature=_property(msg, SIGNATURE),
        key_id=_property(msg, KEY_ID),
        identity_token=_property(msg, IDENTITY_TOKEN),
    )
    try:
        if is_rollout(body):
            rollout = service.ingest_rollout(body, message_id=message_id, source="serviceBus", proof=proof)
            log.info(
                "rollout event %s (delivery %s): %s %s",
                message_id,
                msg.delivery_count,
                rollout.outcome,
                rollout.rollout.id if rollout.rollout else rollout.refusal,
            )
            return
        result = service.ingest(body, message_id=message_id, source="serviceBus", proof=proof)
    except StoreUnavailable:
        raise  # storage will be back: let Service Bus deliver it again
    except ReleaseIdConflict as exc:
        _keep(service, body, message_id, str(exc), [("releaseId", "is already used by a different release")])
        return
    except Exception as exc:  # a bug must not turn one event into endless redelivery: keep it for a person
        log.exception("release event %s could not be processed", message_id)
        _keep(service, body, message_id, f"the controller could not process this event ({type(exc).__name__})", [])
        return
    log.info(
        "release event %s (delivery %s): %s %s",
        message_id,
        msg.delivery_count,
        result.outcome,
        result.release.id if result.release else result.refusal,
    )


def _keep(service: Any, body: bytes, message_id: str | None, reason: str, errors: list[tuple[str, str]]) -> None:
    service.store.save_rejected(
        RejectedEvent(
            received_at=service.clock.now(),
            source="serviceBus",
            message_id=message_id,
            reason=reason,
            errors=errors,
            body=redact_event(body, max_bytes=MAX_EVENT_BYTES),
            details={"bodySha256": hashlib.sha256(body).hexdigest()},
        )
    )
    log.warning("release event %s kept as rejected: %s", message_id, reason[:300])
