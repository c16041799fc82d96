"""The AMQP 1.0 face of the stand-in, on python-qpid-proton: what azure-servicebus 7.15 (its pure
Python ``_pyamqp`` client) sees when it talks to a Service Bus namespace.

- **Claims-based security**: a client puts a shared access signature on ``$cbs`` (request on a
  link to ``$cbs``, answer with ``status-code`` on the link from ``$cbs``) before it attaches to an
  entity; an attach the connection holds no valid token for is refused with
  ``amqp:unauthorized-access``. A wrong key or an expired token is answered 401, which the SDK
  raises as ``ServiceBusAuthenticationError``.
- **Senders** attach to the topic (target ``amqps://host/<topic>``); each message, or each message
  of a batch, is published; a duplicate is accepted and dropped.
- **Receivers** attach to ``<topic>/Subscriptions/<name>`` (or its ``/$DeadLetterQueue``). A
  session receiver puts ``com.microsoft:session-filter`` in its source filter (a session id, or
  null for the next available session); the answer names the session in the same filter and its
  lock in the link property ``com.microsoft:locked-until-utc``. A request for the next available
  session waits (up to the link property ``com.microsoft:timeout``) and then fails with
  ``com.microsoft:timeout``; a session locked elsewhere fails with
  ``com.microsoft:session-cannot-be-locked``; a lost session lock detaches the link with
  ``com.microsoft:session-lock-lost``.
- **Deliveries** carry the lock token as their delivery tag (a UUID, little-endian bytes). The SDK
  settles in receive-settle-mode second and waits for the answer: accepted = complete, modified
  (delivery-failed) = abandon, rejected with ``com.microsoft:dead-letter`` = dead-letter (reason and
  description in the error's info), released = give back uncounted; modified undeliverable-here
  (defer) is refused with ``amqp:not-implemented``. A settlement whose lock is gone is answered
  rejected with ``com.microsoft:message-lock-lost`` or ``com.microsoft:session-lock-lost``.
- **Management** requests on ``<entity>/$management``: see ``management.py``.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from proton import Condition, Delivery, Endpoint, Handler, Link, Message, Terminus, symbol

from devstack.servicebus import wire
from devstack.servicebus.broker import (
    MESSAGE_LOCK_LOST,
    MESSAGE_SIZE_EXCEEDED,
    NOT_ALLOWED,
    NOT_IMPLEMENTED,
    SESSION_LOCK_LOST,
    TIMEOUT,
    UNAUTHORIZED,
    BrokerError,
    Namespace,
    Outcome,
    Queue,
    Session,
    Topic,
    entity_path,
)
from devstack.servicebus.entities import ServiceBusConfig
from devstack.servicebus.management import Answer, ManagementNode, error_condition, put_token
from devstack.servicebus.sas import Grant

log = logging.getLogger("devstack.servicebus")

CBS = "$cbs"
MANAGEMENT = "/$management"
SESSION_FILTER = symbol("com.microsoft:session-filter")
SESSION_LOCKED_UNTIL = symbol("com.microsoft:locked-until-utc")
LINK_TIMEOUT = symbol("com.microsoft:timeout")
DEAD_LETTER = "com.microsoft:dead-letter"
CREDIT = 100  # what a sender may have in flight to us


@dataclass(eq=False)
class Consumer:
    """A receiver attached to a subscription or its dead-letter queue; the owner of its locks."""

    link: Link
    queue: Queue
    session: Session | None = None
    receive_and_delete: bool = False


@dataclass(eq=False)
class SessionRequest:
    """A receiver waiting for the next available session."""

    consumer: Consumer
    deadline: float


@dataclass(eq=False)
class ConnectionState:
    grants: list[Grant] = field(default_factory=list)
    # Links on which we answer requests: "$cbs", or an entity's management path.
    reply_links: dict[str, Link] = field(default_factory=dict)
    consumers: dict[str, Consumer] = field(default_factory=dict)  # by link name (associated-link-name)
    # Every entity link and the path its token must keep covering (Service Bus detaches a link
    # whose token expired without a new one being put).
    entitled: dict[Any, str] = field(default_factory=dict)


def _condition(name: str, description: str) -> Condition:
    """An error as Service Bus sends it: with a tracking id in its info. (pyamqp reads the info of a
    rejected send unconditionally; without one, the send fails in a callback and waits forever.)"""
    return Condition(name, description, {symbol("com.microsoft:tracking-id"): str(uuid.uuid4())})


def guarded(method: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """A bug here must not stop the event thread (every client would hang): the connection it
    happened on is closed with ``amqp:internal-error`` naming it, loudly, and the rest carry on."""

    @functools.wraps(method)
    def run(self: Any, event: Any) -> None:
        try:
            method(self, event)
        except Exception as exc:
            log.exception("the Service Bus stand-in failed on %s", method.__name__)
            connection = getattr(event, "connection", None)
            if connection is not None and not connection.state & Endpoint.LOCAL_CLOSED:
                connection.condition = _condition("amqp:internal-error", f"stand-in bug: {type(exc).__name__}: {exc}")
                connection.close()

    return run


class NoOwner:
    """Stands for a management request that names no receiver: no session is locked to it."""


class ServiceBusHandler(Handler):
    """Every connection's events, on the one event thread; the broker state is touched only here."""

    def __init__(self, config: ServiceBusConfig, namespace: Namespace, clock: Callable[[], float]):
        super().__init__()
        self.config = config
        self.namespace = namespace
        self.clock = clock
        self.connections: dict[Any, ConnectionState] = {}
        self.waiting: list[SessionRequest] = []
        self.tick_seconds = 0.05

    # -- connections and sessions --------------------------------------------------------------

    @guarded
    def on_connection_bound(self, event: Any) -> None:
        # The SDK authenticates with SASL ANONYMOUS and then puts a token on $cbs.
        event.transport.sasl().allowed_mechs("ANONYMOUS")

    @guarded
    def on_connection_remote_open(self, event: Any) -> None:
        connection = event.connection
        if connection.state & Endpoint.LOCAL_UNINIT:
            connection.container = "servicebus-stand-in"
            connection.open()
            self.connections[connection] = ConnectionState()

    @guarded
    def on_session_remote_open(self, event: Any) -> None:
        if event.session.state & Endpoint.LOCAL_UNINIT:
            event.session.open()

    @guarded
    def on_session_remote_close(self, event: Any) -> None:
        if not event.session.state & Endpoint.LOCAL_CLOSED:
            event.session.close()

    @guarded
    def on_connection_remote_close(self, event: Any) -> None:
        self._forget(event.connection)
        if not event.connection.state & Endpoint.LOCAL_CLOSED:
            event.connection.close()

    @guarded
    def on_transport_closed(self, event: Any) -> None:
        if event.connection is not None:
            self._forget(event.connection)

    def _forget(self, connection: Any) -> None:
        state = self.connections.pop(connection, None)
        if state is not None:
            for consumer in state.consumers.values():
                self._drop(consumer)
            self._work()

    def close_all(self) -> None:
        for connection in list(self.connections):
            self._forget(connection)
            connection.close()

    # -- attaching ---------------------------------------------------------------------------

    @guarded
    def on_link_remote_open(self, event: Any) -> None:
        link = event.link
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        state = self.connections.get(link.connection)
        if state is None:
            return
        try:
            if link.is_receiver:
                self._attach_incoming(link, state)
            else:
                self._attach_outgoing(link, state)
        except BrokerError as error:
            self._refuse(link, error.condition, error.description)

    def _authorize(self, state: ConnectionState, path: str, link: Any) -> None:
        now = self.clock()
        state.entitled[link] = path
        if not any(grant.covers(path, now) for grant in state.grants):
            del state.entitled[link]
            raise BrokerError(
                UNAUTHORIZED,
                f"Unauthorized access to '{path}': put a valid token for it on $cbs first (claims-based security).",
            )

    def _attach_incoming(self, link: Any, state: ConnectionState) -> None:
        """The client sends on this link: requests to $cbs or a management node, or messages to a topic."""
        address = link.remote_target.address or ""
        if address != CBS:
            path = entity_path(address)
            if path.endswith(MANAGEMENT):
                self.namespace.entity(path.removesuffix(MANAGEMENT))
                self._authorize(state, path.removesuffix(MANAGEMENT), link)
            else:
                self.namespace.topic(path)
                self._authorize(state, path, link)
                link.max_message_size = self.config.max_message_bytes
        link.target.copy(link.remote_target)
        link.source.copy(link.remote_source)
        link.open()
        link.flow(CREDIT)

    def _attach_outgoing(self, link: Any, state: ConnectionState) -> None:
        """The client receives on this link: answers from $cbs or a management node, or messages."""
        address = link.remote_source.address or ""
        if address == CBS:
            self._open_reply_link(link, state, CBS)
            return
        path = entity_path(address)
        if path.endswith(MANAGEMENT):
            self.namespace.entity(path.removesuffix(MANAGEMENT))
            self._authorize(state, path.removesuffix(MANAGEMENT), link)
            self._open_reply_link(link, state, path)
            return
        queue = self.namespace.queue(path)
        self._authorize(state, path, link)
        filters = _filters(link.remote_source)
        wants_session = str(SESSION_FILTER) in filters
        if wants_session != queue.requires_session:
            raise BrokerError(
                NOT_ALLOWED,
                f"{queue.path} requires sessions: accept a session (session_id or NEXT_AVAILABLE_SESSION)"
                if queue.requires_session
                else f"{queue.path} does not require sessions: receive without a session",
            )
        consumer = Consumer(link, queue, receive_and_delete=link.remote_snd_settle_mode == Link.SND_SETTLED)
        if not wants_session:
            self._open_consumer(consumer, state)
            return
        session_id = filters[str(SESSION_FILTER)]
        now = self.clock()
        session = queue.accept_session(consumer, None if session_id is None else str(session_id), now)
        if session is not None:
            self._open_consumer(consumer, state, session)
            return
        properties = link.remote_properties or {}
        timeout_ms = properties.get(LINK_TIMEOUT)
        wait = self.config.operation_timeout if timeout_ms is None else int(timeout_ms) / 1000.0
        state.consumers[link.name] = consumer
        self.waiting.append(SessionRequest(consumer, now + wait))

    def _open_reply_link(self, link: Any, state: ConnectionState, key: str) -> None:
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.open()
        state.reply_links[key] = link

    def _open_consumer(self, consumer: Consumer, state: ConnectionState, session: Session | None = None) -> None:
        link = consumer.link
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        if session is not None:
            consumer.session = session
            link.source.filter.clear()
            link.source.filter.put_object({SESSION_FILTER: session.id})
            link.properties = {SESSION_LOCKED_UNTIL: wire.ticks(session.locked_until)}
        link.open()
        state.consumers[link.name] = consumer
        self._pump(consumer)

    def _refuse(self, link: Any, condition: str, description: str) -> None:
        """Answer the attach with a null terminus on our side (the link is refused: pyamqp never
        counts it as attached) and detach it at once with the error."""
        log.info("refused link %s: %s %s", link.name, condition, description)
        if link.is_sender:
            link.source.type = Terminus.UNSPECIFIED
        else:
            link.target.type = Terminus.UNSPECIFIED
        link.condition = _condition(condition, description)
        link.close()

    # -- time --------------------------------------------------------------------------------

    @guarded
    def on_timer_task(self, event: Any) -> None:
        event.container.schedule(self.tick_seconds, self)  # first: time must keep passing whatever happens
        self._work()

    def _work(self) -> None:
        """Let time pass, hand out sessions to waiting receivers, and deliver what is ready."""
        now = self.clock()
        for state in list(self.connections.values()):
            self._check_tokens(state, now)
        for owner in self.namespace.expire(now):
            if isinstance(owner, Consumer) and owner.link.state & Endpoint.LOCAL_ACTIVE:
                owner.session = None
                self._detach(owner, SESSION_LOCK_LOST, "The session lock has expired. Accept a new session.")
        for request in list(self.waiting):
            consumer = request.consumer
            state = self.connections.get(consumer.link.connection)
            if state is None or consumer.link.state & Endpoint.REMOTE_CLOSED:
                self.waiting.remove(request)
                continue
            session = consumer.queue.accept_session(consumer, None, now)
            if session is not None:
                self.waiting.remove(request)
                self._open_consumer(consumer, state, session)
            elif now >= request.deadline:
                self.waiting.remove(request)
                state.consumers.pop(consumer.link.name, None)
                self._refuse(
                    consumer.link,
                    TIMEOUT,
                    "The operation did not complete within the allocated time: no session is available.",
                )
        for state in list(self.connections.values()):
            for consumer in list(state.consumers.values()):
                self._pump(consumer)

    def _check_tokens(self, state: ConnectionState, now: float) -> None:
        state.grants = [grant for grant in state.grants if grant.expires_at > now]
        for link, path in list(state.entitled.items()):
            if link.state & Endpoint.LOCAL_CLOSED:
                del state.entitled[link]
            elif not any(grant.covers(path, now) for grant in state.grants):
                del state.entitled[link]
                description = f"The token for '{path}' has expired: put a new one on $cbs before it expires."
                consumer = state.consumers.get(link.name)
                if consumer is not None and consumer.link == link:
                    self._detach(consumer, UNAUTHORIZED, description)
                else:
                    link.condition = _condition(UNAUTHORIZED, description)
                    link.close()

    # -- delivering --------------------------------------------------------------------------

    @guarded
    def on_link_flow(self, event: Any) -> None:
        state = self.connections.get(event.link.connection)
        consumer = state.consumers.get(event.link.name) if state else None
        if consumer is not None and consumer.link == event.link:
            self._pump(consumer)

    def _pump(self, consumer: Consumer) -> None:
        link = consumer.link
        if not link.state & Endpoint.LOCAL_ACTIVE or link.state & Endpoint.REMOTE_CLOSED:
            return
        now = self.clock()
        while link.credit > 0:
            entry = consumer.queue.next_delivery(consumer, consumer.session, now)
            if entry is None:
                break
            assert entry.lock_token is not None
            delivery = link.delivery(entry.lock_token.bytes_le)
            link.stream(wire.delivered(entry, locked=not consumer.receive_and_delete))
            link.advance()
            if consumer.receive_and_delete:
                delivery.settle()
                consumer.queue.take(entry)
            else:
                delivery.lock_token = entry.lock_token
        if link.drain_mode and link.credit > 0:
            link.drained()

    def _detach(self, consumer: Consumer, condition: str, description: str) -> None:
        state = self.connections.get(consumer.link.connection)
        if state is not None:
            state.consumers.pop(consumer.link.name, None)
        self._drop(consumer)
        consumer.link.condition = _condition(condition, description)
        consumer.link.close()

    def _drop(self, consumer: Consumer) -> None:
        consumer.queue.release_sessions(consumer)
        consumer.session = None
        self.waiting = [r for r in self.waiting if r.consumer is not consumer]

    @guarded
    def on_link_remote_close(self, event: Any) -> None:
        link = event.link
        state = self.connections.get(link.connection)
        if state is not None:
            consumer = state.consumers.get(link.name)
            if consumer is not None and consumer.link == link:
                del state.consumers[link.name]
                self._drop(consumer)
            for key, reply in list(state.reply_links.items()):
                if reply == link:
                    del state.reply_links[key]
            state.entitled.pop(link, None)
        if not link.state & Endpoint.LOCAL_CLOSED:
            link.close()
        self._work()

    # -- deliveries and dispositions ------------------------------------------------------------

    @guarded
    def on_delivery(self, event: Any) -> None:
        link, delivery = event.link, event.delivery
        state = self.connections.get(link.connection)
        if state is None:
            return
        if link.is_receiver:
            if delivery.aborted:
                delivery.settle()
            elif not delivery.partial and delivery.readable:
                payload = bytes(link.recv(delivery.pending))
                link.advance()
                self._received(link, delivery, payload, state)
                if link.credit < CREDIT // 2:
                    link.flow(CREDIT - link.credit)
        else:
            consumer = state.consumers.get(link.name)
            if consumer is not None and consumer.link == link and delivery.updated:
                self._settled_by_receiver(consumer, delivery)
            elif delivery.settled:  # an answer on a $cbs or management link, received
                delivery.settle()
        self._work()

    def _settled_by_receiver(self, consumer: Consumer, delivery: Any) -> None:
        remote = delivery.remote_state
        if remote == 0:  # no outcome yet
            return
        lock_token = getattr(delivery, "lock_token", None)
        outcome, reason, description = _outcome(delivery)
        failure: BrokerError | None = None
        try:
            if lock_token is None:
                raise BrokerError(MESSAGE_LOCK_LOST, "The delivery carries no lock.")
            if outcome is None:
                raise BrokerError(NOT_IMPLEMENTED, f"the Service Bus stand-in does not implement outcome {remote}")
            consumer.queue.settle(
                lock_token,
                outcome,
                owner=consumer,
                now=self.clock(),
                session_id=consumer.session.id if consumer.session else None,
                reason=reason,
                description=description,
            )
        except BrokerError as error:
            failure = error
            log.info("settlement refused: %s %s", error.condition, error.description)
        if not delivery.settled:  # the SDK waits for the outcome it asked for
            if failure is not None:
                delivery.local.condition = _condition(failure.condition, failure.description)
                delivery.update(Delivery.REJECTED)
            else:
                if remote == Delivery.MODIFIED:
                    delivery.local.failed = delivery.remote.failed
                    delivery.local.undeliverable = delivery.remote.undeliverable
                delivery.update(remote)
        delivery.settle()

    def _received(self, link: Any, delivery: Any, payload: bytes, state: ConnectionState) -> None:
        address = link.remote_target.address or ""
        if address == CBS:
            self._settle_incoming(delivery)
            self._put_token(payload, state)
            return
        path = entity_path(address)
        if path.endswith(MANAGEMENT):
            self._settle_incoming(delivery)
            self._management(path, payload, state)
            return
        try:
            if len(payload) > self.config.max_message_bytes:
                raise BrokerError(
                    MESSAGE_SIZE_EXCEEDED,
                    f"The message of {len(payload)} bytes exceeds the limit of {self.config.max_message_bytes} bytes.",
                )
            topic: Topic = self.namespace.topic(path)
            envelopes = [wire.envelope(part) for part in wire.unbatch(payload)]
            for duplicate in topic.publish(envelopes, self.clock()):
                log.info("duplicate message %s accepted and dropped", duplicate.message_id)
            self._settle_incoming(delivery)
        except BrokerError as error:
            self._settle_incoming(delivery, _condition(error.condition, error.description))
        except NotImplementedError as error:
            self._settle_incoming(
                delivery, _condition(NOT_IMPLEMENTED, f"the Service Bus stand-in does not implement {error}")
            )
        except ValueError as error:
            self._settle_incoming(delivery, _condition("amqp:decode-error", str(error)))

    def _settle_incoming(self, delivery: Any, refusal: Condition | None = None) -> None:
        if refusal is None:
            delivery.update(Delivery.ACCEPTED)
        else:
            delivery.local.condition = refusal
            delivery.update(Delivery.REJECTED)
        delivery.settle()

    # -- requests ----------------------------------------------------------------------------

    def _decode(self, payload: bytes) -> Message:
        message = Message()
        message.decode(payload)
        return message

    def _reply(self, state: ConnectionState, key: str, request: Message, properties: dict[str, Any], body: Any) -> None:
        link = state.reply_links.get(key)
        if link is None:
            log.warning("no link to answer %s on (the client attached none)", key)
            return
        link.send(Message(correlation_id=request.id, properties=properties, body=body))

    def _put_token(self, payload: bytes, state: ConnectionState) -> None:
        request = self._decode(payload)
        status, description, grant = put_token(request.properties or {}, request.body, self.config, self.clock())
        if grant is not None:
            state.grants.append(grant)
        self._reply(state, CBS, request, {"status-code": status, "status-description": description}, None)

    def _management(self, path: str, payload: bytes, state: ConnectionState) -> None:
        request = self._decode(payload)
        properties = request.properties or {}
        operation = str(properties.get("operation", ""))
        entity = path.removesuffix(MANAGEMENT)
        queue = self.namespace.queues.get(entity)
        if queue is not None:
            linked = state.consumers.get(str(properties.get("associated-link-name", "")))
            owner = linked if linked is not None else NoOwner()
            answer = ManagementNode(queue, self.clock).answer(operation, wire.owned(request.body), owner)
        else:  # a topic's node: scheduling is all the SDK sends there
            answer = Answer.refusal(
                BrokerError(
                    NOT_IMPLEMENTED,
                    f"the Service Bus stand-in does not implement the operation {operation!r} on {entity}",
                )
            )
        self._reply(state, path, request, error_condition(answer), answer.body)


def _filters(terminus: Any) -> dict[str, Any]:
    data = terminus.filter
    data.rewind()
    if data.next() is None:
        return {}
    value = data.get_object()
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _outcome(delivery: Any) -> tuple[Outcome | None, str | None, str | None]:
    remote = delivery.remote_state
    if remote == Delivery.ACCEPTED:
        return Outcome.COMPLETE, None, None
    if remote == Delivery.RELEASED:
        return Outcome.RELEASE, None, None
    if remote == Delivery.MODIFIED:
        return (Outcome.DEFER if delivery.remote.undeliverable else Outcome.ABANDON), None, None
    if remote == Delivery.REJECTED:
        condition = delivery.remote.condition
        info = {str(k): v for k, v in (condition.info or {}).items()} if condition is not None else {}
        reason = info.get("DeadLetterReason")
        description = info.get("DeadLetterErrorDescription")
        if condition is not None and condition.name not in (DEAD_LETTER, None):
            reason = reason or condition.name
        return (
            Outcome.DEAD_LETTER,
            None if reason is None else str(reason),
            None if description is None else str(description),
        )
    return None, None, None
