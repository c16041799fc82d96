"""The local Functions host's Service Bus trigger: a receiver loop with the real azure-servicebus
SDK, standing in for the Service Bus extension of the Functions host.

As the host does with ``isSessionsEnabled`` and ``host.json`` (``autoCompleteMessages: true``,
``sessionIdleTimeout``, ``maxAutoLockRenewalDuration``): accept the next available session, hand
its messages one at a time, in order, to the function as ``azure.functions.ServiceBusMessage``
(delivery count as the host counts it: 1 on the first delivery), complete a message when the
function returns and abandon it when it raises (Service Bus redelivers it, then dead-letters it
after MaxDeliveryCount), keep the session lock renewed, and let the session go after it has been
idle for ``session_idle_timeout``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.functions.servicebus import ServiceBusMessage

log = logging.getLogger("devstack.funchost")

# host.json of this app: extensions.serviceBus.
SESSION_IDLE_TIMEOUT_SECONDS = 30.0
MAX_AUTO_LOCK_RENEWAL_SECONDS = 300.0


@dataclass(frozen=True)
class ServiceBusTrigger:
    """One Service Bus trigger binding, its ``%settings%`` resolved."""

    function: str
    topic: str
    subscription: str
    connection_setting: str
    sessions: bool
    handler: Callable[[ServiceBusMessage], Any]


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def functions_message(message: Any) -> ServiceBusMessage:
    """What the Python worker hands the function for a received message (the host's metadata:
    string keys and values, the .NET delivery count)."""
    from azure.servicebus.amqp import AmqpMessageBodyType

    # A data body is the bytes as sent; an AMQP value body (some SDKs send strings so) as its text.
    data = message.body_type == AmqpMessageBodyType.DATA
    body = b"".join(message.body) if data else str(message).encode()
    properties = {_text(k): _text(v) for k, v in (message.application_properties or {}).items()}
    return ServiceBusMessage(
        body=body,
        message_id=message.message_id,
        session_id=message.session_id,
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        delivery_count=(message.delivery_count or 0) + 1,
        enqueued_time_utc=message.enqueued_time_utc,
        sequence_number=message.sequence_number,
        lock_token=str(message.lock_token),
        subject=message.subject,
        application_properties=properties,
        user_properties=properties,
    )


class ServiceBusTriggerListener:
    """Receives for one trigger on a thread of its own until ``stop()``; every wait is bounded by
    ``poll_seconds``, so stopping takes about that long plus closing the connection."""

    def __init__(
        self,
        trigger: ServiceBusTrigger,
        connection_string: str,
        *,
        poll_seconds: float = 1.0,
        session_idle_timeout: float = SESSION_IDLE_TIMEOUT_SECONDS,
    ):
        self.trigger = trigger
        self.connection_string = connection_string
        self.poll_seconds = poll_seconds
        self.session_idle_timeout = session_idle_timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ServiceBusTriggerListener:
        self._thread = threading.Thread(target=self._run, name=f"servicebus-{self.trigger.function}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the Service Bus listener of %s did not stop within %.0f s", self.trigger.function, timeout)
            self._thread = None

    def _run(self) -> None:
        from azure.servicebus import AutoLockRenewer, ServiceBusClient
        from azure.servicebus.exceptions import ServiceBusError

        renewer = AutoLockRenewer(max_lock_renewal_duration=MAX_AUTO_LOCK_RENEWAL_SECONDS)
        try:
            while not self._stop.is_set():
                try:
                    with ServiceBusClient.from_connection_string(self.connection_string, retry_total=0) as client:
                        while not self._stop.is_set():
                            self._receive(client, renewer)
                except ServiceBusError as exc:
                    # The host logs a listener error and reconnects with a back-off.
                    log.warning("Service Bus listener of %s: %s; reconnecting", self.trigger.function, exc)
                    self._stop.wait(self.poll_seconds)
                except Exception:  # a listener that dies in silence would leave messages waiting forever
                    log.exception("Service Bus listener of %s failed; starting again", self.trigger.function)
                    self._stop.wait(self.poll_seconds)
        finally:
            renewer.close()

    def _receive(self, client: Any, renewer: Any) -> None:
        """Serve one session (or, without sessions, one poll) until it is idle."""
        from azure.servicebus import NEXT_AVAILABLE_SESSION
        from azure.servicebus.exceptions import OperationTimeoutError, ServiceBusError

        receiver = client.get_subscription_receiver(
            self.trigger.topic,
            self.trigger.subscription,
            session_id=NEXT_AVAILABLE_SESSION if self.trigger.sessions else None,
            max_wait_time=self.poll_seconds,
            auto_lock_renewer=renewer if self.trigger.sessions else None,
        )
        try:
            with receiver:
                idle_since = time.monotonic()
                while not self._stop.is_set():
                    messages = receiver.receive_messages(max_message_count=1, max_wait_time=self.poll_seconds)
                    for message in messages:
                        self._invoke(receiver, message)
                        idle_since = time.monotonic()
                    if not messages and (
                        not self.trigger.sessions or time.monotonic() - idle_since >= self.session_idle_timeout
                    ):
                        return
        except OperationTimeoutError:
            return  # no session had messages within the poll: ask again
        except ServiceBusError as exc:  # e.g. the session lock was lost: the host lets the session go
            log.warning("Service Bus session of %s ended: %s", self.trigger.function, exc)

    def _invoke(self, receiver: Any, message: Any) -> None:
        event = functions_message(message)
        try:
            self.trigger.handler(event)
        except Exception as exc:  # the host abandons the message; Service Bus delivers it again
            log.warning(
                "service bus function %s raised on message %s (delivery %s); abandoning it: %s",
                self.trigger.function,
                event.message_id,
                event.delivery_count,
                exc,
            )
            receiver.abandon_message(message)
        else:
            receiver.complete_message(message)
