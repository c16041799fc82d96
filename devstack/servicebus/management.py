"""Requests and answers: the ``put-token`` operation on ``$cbs`` (claims-based security), and the
request/response operations on an entity's ``$management`` node that azure-servicebus 7.15
uses with a subscription: renew a message lock, renew a session lock, get and set session state,
peek, and settle by lock token (the SDK's fallback when a settlement on the receive link is not
confirmed). Stands in for "AMQP 1.0 in Azure Service Bus: request-response-based operations".

Every other operation the SDK can send (schedule and cancel scheduled messages, receive deferred
messages by sequence number, list sessions, rules) is answered 501 with ``amqp:not-implemented``
naming it, which the SDK raises as ``ServiceBusError``: never a silent success, never a hang.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from proton import UNDESCRIBED, Array, Data, symbol, timestamp

from devstack.servicebus import wire
from devstack.servicebus.broker import ARGUMENT_ERROR, NOT_IMPLEMENTED, BrokerError, Outcome, Queue
from devstack.servicebus.entities import ServiceBusConfig
from devstack.servicebus.sas import Grant, TokenRefused, check_token

VENDOR = "com.microsoft:"
# The update-disposition statuses the SDK sends, as outcomes.
_DISPOSITIONS = {
    "completed": Outcome.COMPLETE,
    "abandoned": Outcome.ABANDON,
    "suspended": Outcome.DEAD_LETTER,
    "defered": Outcome.DEFER,  # sic: the SDK's spelling
}


@dataclass
class Answer:
    status: int
    description: str
    body: dict[str, Any] = field(default_factory=dict)
    condition: str | None = None

    @classmethod
    def refusal(cls, error: BrokerError) -> Answer:
        return cls(error.status_code, error.description, {}, error.condition)


def _tokens(value: Any) -> list[uuid.UUID]:
    items = value.elements if isinstance(value, Array) else value
    if not isinstance(items, list | tuple) or not all(isinstance(t, uuid.UUID) for t in items):
        raise BrokerError(ARGUMENT_ERROR, "lock-tokens must be an array of UUIDs")
    return list(items)


def _timestamps(values: list[float]) -> Array:
    return Array(UNDESCRIBED, Data.TIMESTAMP, *(timestamp(int(v * 1000)) for v in values))


class ManagementNode:
    """The ``$management`` node of one subscription (or its dead-letter sub-queue)."""

    def __init__(self, queue: Queue, clock: Callable[[], float]):
        self.queue = queue
        self.clock = clock

    def answer(self, operation: str, body: Any, owner: Hashable) -> Answer:
        """``owner`` is the receiver named by the request's ``associated-link-name`` (or an object
        no session is locked to, when it names none)."""
        handler = {
            "renew-lock": self._renew_lock,
            "renew-session-lock": self._renew_session_lock,
            "get-session-state": self._get_session_state,
            "set-session-state": self._set_session_state,
            "peek-message": self._peek,
            "update-disposition": self._update_disposition,
        }.get(operation.removeprefix(VENDOR))
        try:
            if handler is None:
                raise BrokerError(
                    NOT_IMPLEMENTED, f"the Service Bus stand-in does not implement the operation {operation!r}"
                )
            if not isinstance(body, dict):
                raise BrokerError(ARGUMENT_ERROR, f"{operation}: the request body must be a map")
            return handler(body, owner, self.clock())
        except BrokerError as error:
            return Answer.refusal(error)

    def _renew_lock(self, body: dict[str, Any], owner: Hashable, now: float) -> Answer:
        until = self.queue.renew_message_locks(_tokens(body.get("lock-tokens")), now)
        return Answer(200, "OK", {"expirations": _timestamps(until)})

    def _renew_session_lock(self, body: dict[str, Any], owner: Hashable, now: float) -> Answer:
        until = self.queue.renew_session_lock(body.get("session-id"), owner, now)
        return Answer(200, "OK", {"expiration": timestamp(int(until * 1000))})

    def _get_session_state(self, body: dict[str, Any], owner: Hashable, now: float) -> Answer:
        state = self.queue.get_session_state(body.get("session-id"), owner, now)
        return Answer(200, "OK", {"session-state": state})

    def _set_session_state(self, body: dict[str, Any], owner: Hashable, now: float) -> Answer:
        state = wire.owned(body.get("session-state"))
        if state is not None and not isinstance(state, bytes):
            raise BrokerError(ARGUMENT_ERROR, "session-state must be binary")
        self.queue.set_session_state(body.get("session-id"), state, owner, now)
        return Answer(200, "OK")

    def _peek(self, body: dict[str, Any], owner: Hashable, now: float) -> Answer:
        start = int(body.get("from-sequence-number") or 1)
        count = int(body.get("message-count") or 1)
        found = self.queue.peek(start, count, body.get("session-id"), now)
        if not found:
            return Answer(204, "No messages")
        messages = [{"message": wire.delivered(entry, locked=False)} for entry in found]
        return Answer(200, "OK", {"messages": messages})

    def _update_disposition(self, body: dict[str, Any], owner: Hashable, now: float) -> Answer:
        status = body.get("disposition-status")
        outcome = _DISPOSITIONS.get(str(status))
        if outcome is None:
            raise BrokerError(ARGUMENT_ERROR, f"unknown disposition-status {status!r}")
        for token in _tokens(body.get("lock-tokens")):
            self.queue.settle(
                token,
                outcome,
                owner=owner,
                now=now,
                session_id=body.get("session-id"),
                reason=body.get("deadletter-reason"),
                description=body.get("deadletter-description"),
            )
        return Answer(200, "OK")


def error_condition(answer: Answer) -> dict[str, Any]:
    """The application properties of a management response."""
    properties: dict[str, Any] = {"statusCode": answer.status, "statusDescription": answer.description}
    if answer.condition is not None:
        properties["errorCondition"] = symbol(answer.condition)
    return properties


def put_token(
    properties: dict[str, Any], token: Any, config: ServiceBusConfig, now: float
) -> tuple[int, str, Grant | None]:
    """Answer a ``$cbs`` request: 202 and the grant, or 401 saying why (the SDK raises
    ``ServiceBusAuthenticationError``)."""
    if properties.get("operation") != "put-token":
        return 501, f"the Service Bus stand-in does not implement $cbs {properties.get('operation')!r}", None
    try:
        grant = check_token(
            str(token), audience=str(properties.get("name", "")), key_name=config.key_name, key=config.key, now=now
        )
    except TokenRefused as refused:
        return 401, str(refused), None
    return 202, "Accepted", grant
