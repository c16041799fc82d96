"""What Service Bus does with a message once it has it, without the protocol: pure state on an
explicit clock (every call takes ``now``), driven by the AMQP layer in ``amqp.py``.

It stands in for a topic and its subscriptions:

- **Topic**: sequence numbers, fan-out to every subscription, duplicate detection by message id
  within the window (a duplicate is accepted and dropped, as Azure does).
- **Subscription** (``Queue``): peek-lock deliveries in sequence order; complete, abandon,
  dead-letter, release; a lock lasts ``lock_duration`` and an expired lock counts as a failed
  delivery, like an abandon; after ``max_delivery_count`` failed deliveries the message moves to
  the dead-letter sub-queue with reason ``MaxDeliveryCountExceeded``. With sessions, a session is
  locked to one receiver; its messages share the session's lock, and when that lock expires the
  receiver loses the session and every message it held counts as a failed delivery.
- **Dead-letter sub-queue**: a plain queue (no sessions, no further dead-lettering) whose messages
  carry the reason and description.

Delivery counts follow the wire: ``deliveries`` counts every delivery under a lock; the AMQP
header carries ``deliveries - 1`` (what Azure puts there; .NET and the Functions host add one).
A released delivery (the SDK releases what reached it outside a receive call) is not counted.
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import StrEnum

from devstack.servicebus.entities import ServiceBusConfig, SubscriptionConfig, TopicConfig

# AMQP error conditions, as the service sends them (the SDK maps each to an exception class).
NOT_FOUND = "amqp:not-found"
NOT_ALLOWED = "amqp:not-allowed"
NOT_IMPLEMENTED = "amqp:not-implemented"
UNAUTHORIZED = "amqp:unauthorized-access"
MESSAGE_SIZE_EXCEEDED = "amqp:link:message-size-exceeded"
MESSAGE_LOCK_LOST = "com.microsoft:message-lock-lost"
SESSION_LOCK_LOST = "com.microsoft:session-lock-lost"
SESSION_CANNOT_BE_LOCKED = "com.microsoft:session-cannot-be-locked"
TIMEOUT = "com.microsoft:timeout"
ARGUMENT_ERROR = "com.microsoft:argument-error"

# The status code of a management response carrying the condition.
_STATUS = {
    NOT_FOUND: 404,
    NOT_ALLOWED: 403,
    NOT_IMPLEMENTED: 501,
    UNAUTHORIZED: 401,
    MESSAGE_SIZE_EXCEEDED: 413,
    MESSAGE_LOCK_LOST: 410,
    SESSION_LOCK_LOST: 410,
    SESSION_CANNOT_BE_LOCKED: 410,
    TIMEOUT: 408,
    ARGUMENT_ERROR: 400,
}

MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"
DEAD_LETTER_SUFFIX = "/$deadletterqueue"


class BrokerError(Exception):
    """A request Service Bus refuses; ``condition`` is the AMQP error condition it would send."""

    def __init__(self, condition: str, description: str):
        super().__init__(description)
        self.condition = condition
        self.description = description

    @property
    def status_code(self) -> int:
        return _STATUS.get(self.condition, 500)


class Outcome(StrEnum):
    """How a receiver settles a delivery (AMQP outcome in brackets)."""

    COMPLETE = "complete"  # accepted
    ABANDON = "abandon"  # modified, delivery-failed
    DEAD_LETTER = "dead-letter"  # rejected
    RELEASE = "release"  # released
    DEFER = "defer"  # modified, undeliverable-here


@dataclass(frozen=True)
class Envelope:
    """A message as a sender handed it in; ``payload`` is its AMQP encoding, kept byte for byte."""

    message_id: str | None
    session_id: str | None
    time_to_live: float | None
    payload: bytes


@dataclass(eq=False)
class Entry:
    """A message in one queue."""

    sequence_number: int
    envelope: Envelope
    enqueued_at: float
    deliveries: int = 0
    lock_token: uuid.UUID | None = None
    locked_until: float = 0.0
    owner: Hashable | None = None
    dead_letter_reason: str | None = None
    dead_letter_description: str | None = None

    @property
    def session_id(self) -> str | None:
        return self.envelope.session_id

    def expired(self, now: float) -> bool:
        ttl = self.envelope.time_to_live
        return ttl is not None and self.enqueued_at + ttl <= now


@dataclass(eq=False)
class Session:
    id: str
    owner: Hashable | None = None
    locked_until: float = 0.0
    state: bytes | None = None


@dataclass
class Queue:
    """A subscription, or its dead-letter sub-queue (``dead_letter`` is None there)."""

    path: str
    requires_session: bool
    lock_duration: float
    max_delivery_count: int
    dead_letter: Queue | None = None
    entries: dict[int, Entry] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)
    _locks: dict[uuid.UUID, Entry] = field(default_factory=dict)
    _sequence: int = 0

    # -- arriving ----------------------------------------------------------------------------

    def enqueue(self, entry: Entry) -> None:
        self.entries[entry.sequence_number] = entry

    def _dead_letter(self, entry: Entry, reason: str, description: str) -> None:
        target = self.dead_letter
        if target is None:  # a dead-lettered message is never dead-lettered again
            raise BrokerError(NOT_ALLOWED, f"{self.path} is a dead-letter queue: complete or abandon the message")
        self._remove(entry)
        target._sequence += 1
        target.enqueue(
            Entry(
                target._sequence,
                entry.envelope,
                entry.enqueued_at,
                deliveries=entry.deliveries,
                dead_letter_reason=reason,
                dead_letter_description=description,
            )
        )

    # -- sessions ----------------------------------------------------------------------------

    def accept_session(self, owner: Hashable, session_id: str | None, now: float) -> Session | None:
        """Lock ``session_id`` (or the next session with a message ready) to ``owner``; None when no
        session is ready yet (the caller waits, up to its time-out)."""
        if not self.requires_session:
            raise BrokerError(NOT_ALLOWED, f"{self.path} does not require sessions: use a receiver without a session")
        if session_id is not None:
            session = self.sessions.setdefault(session_id, Session(session_id))
            if session.owner is not None and session.owner != owner:
                raise BrokerError(
                    SESSION_CANNOT_BE_LOCKED,
                    f"The requested session '{session_id}' cannot be accepted. It may be locked by another receiver.",
                )
            return self._lock_session(session, owner, now)
        for entry in self.entries.values():
            if entry.lock_token is None and not entry.expired(now) and entry.session_id is not None:
                session = self.sessions.setdefault(entry.session_id, Session(entry.session_id))
                if session.owner is None:
                    return self._lock_session(session, owner, now)
        return None

    def _lock_session(self, session: Session, owner: Hashable, now: float) -> Session:
        session.owner = owner
        session.locked_until = now + self.lock_duration
        return session

    def release_sessions(self, owner: Hashable) -> None:
        """The receiver's link closed: its session is free again; what it held and had not settled
        counts as a failed delivery."""
        for session in list(self.sessions.values()):
            if session.owner == owner:
                self._lose_session(session)

    def _lose_session(self, session: Session) -> None:
        session.owner = None
        session.locked_until = 0.0
        for entry in [e for e in self._locks.values() if e.session_id == session.id]:
            self._return(entry, counted=True)
        self._forget_if_empty(session)

    def _forget_if_empty(self, session: Session) -> None:
        idle = session.owner is None and session.state is None
        if idle and not any(e.session_id == session.id for e in self.entries.values()):
            self.sessions.pop(session.id, None)

    def _held_session(self, session_id: str | None, owner: Hashable | None, now: float) -> Session:
        session = self.sessions.get(session_id or "")
        if session is None or session.owner is None or session.locked_until <= now:
            raise BrokerError(
                SESSION_LOCK_LOST,
                f"The session lock has expired on the session '{session_id}'. Accept a new session.",
            )
        if owner is not None and session.owner != owner:
            raise BrokerError(SESSION_LOCK_LOST, f"The session '{session_id}' is locked by another receiver.")
        return session

    def renew_session_lock(self, session_id: str | None, owner: Hashable | None, now: float) -> float:
        session = self._held_session(session_id, owner, now)
        session.locked_until = now + self.lock_duration
        for entry in self._locks.values():
            if entry.session_id == session.id:
                entry.locked_until = session.locked_until
        return session.locked_until

    def get_session_state(self, session_id: str | None, owner: Hashable | None, now: float) -> bytes | None:
        return self._held_session(session_id, owner, now).state

    def set_session_state(
        self, session_id: str | None, state: bytes | None, owner: Hashable | None, now: float
    ) -> None:
        self._held_session(session_id, owner, now).state = state

    # -- delivering --------------------------------------------------------------------------

    def next_delivery(self, owner: Hashable, session: Session | None, now: float) -> Entry | None:
        """Lock the first ready message (of ``session``, when given) to ``owner``."""
        if self.requires_session and (session is None or session.owner != owner or session.locked_until <= now):
            return None
        for entry in self.entries.values():
            if entry.lock_token is not None or entry.expired(now):
                continue
            if session is not None and entry.session_id != session.id:
                continue
            entry.deliveries += 1
            entry.lock_token = uuid.uuid4()
            entry.owner = owner
            entry.locked_until = session.locked_until if session is not None else now + self.lock_duration
            self._locks[entry.lock_token] = entry
            return entry
        return None

    def take(self, entry: Entry) -> None:
        """Receive-and-delete: the delivery itself removes the message."""
        self._remove(entry)

    def settle(
        self,
        lock_token: uuid.UUID,
        outcome: Outcome,
        *,
        owner: Hashable | None,
        now: float,
        session_id: str | None = None,
        reason: str | None = None,
        description: str | None = None,
    ) -> None:
        """Apply a receiver's settlement. Raises ``BrokerError`` when the lock is gone (expired,
        already settled, or the session was lost) or the outcome is not implemented."""
        entry = self._locks.get(lock_token)
        if self.requires_session:
            held = self._held_session(session_id or (entry.session_id if entry else None), owner, now)
            if entry is None or entry.session_id != held.id:
                raise BrokerError(MESSAGE_LOCK_LOST, "The lock supplied is invalid: the message was already settled.")
        elif entry is None or entry.locked_until <= now:
            raise BrokerError(
                MESSAGE_LOCK_LOST,
                "The lock supplied is invalid. Either the lock expired, or the message has already been removed.",
            )
        if outcome is Outcome.COMPLETE:
            self._remove(entry)
        elif outcome is Outcome.ABANDON:
            self._return(entry, counted=True)
        elif outcome is Outcome.RELEASE:
            self._return(entry, counted=False)
        elif outcome is Outcome.DEAD_LETTER:
            self._dead_letter(entry, reason or "", description or "")
        else:
            raise BrokerError(NOT_IMPLEMENTED, f"the Service Bus stand-in does not implement {outcome.value}")

    def renew_message_locks(self, lock_tokens: list[uuid.UUID], now: float) -> list[float]:
        if self.requires_session:
            raise BrokerError(NOT_ALLOWED, "messages of a session share the session's lock: renew the session lock")
        until = []
        for token in lock_tokens:
            entry = self._locks.get(token)
            if entry is None or entry.locked_until <= now:
                raise BrokerError(MESSAGE_LOCK_LOST, f"The lock {token} is invalid: it expired or was settled.")
            entry.locked_until = now + self.lock_duration
            until.append(entry.locked_until)
        return until

    def _unlock(self, entry: Entry) -> None:
        if entry.lock_token is not None:
            self._locks.pop(entry.lock_token, None)
        entry.lock_token = None
        entry.owner = None
        entry.locked_until = 0.0

    def _remove(self, entry: Entry) -> None:
        self._unlock(entry)
        self.entries.pop(entry.sequence_number, None)

    def _return(self, entry: Entry, *, counted: bool) -> None:
        self._unlock(entry)
        if not counted:
            entry.deliveries -= 1
        elif self.dead_letter is not None and entry.deliveries >= self.max_delivery_count:
            self._dead_letter(
                entry,
                MAX_DELIVERY_COUNT_EXCEEDED,
                f"Message could not be consumed after {self.max_delivery_count} delivery attempts.",
            )

    # -- browsing ----------------------------------------------------------------------------

    def peek(self, from_sequence_number: int, count: int, session_id: str | None, now: float) -> list[Entry]:
        found = []
        for entry in self.entries.values():
            if len(found) >= count:
                break
            if entry.sequence_number < from_sequence_number or entry.expired(now):
                continue
            if session_id is not None and entry.session_id != session_id:
                continue
            found.append(entry)
        return found

    # -- time --------------------------------------------------------------------------------

    def expire(self, now: float) -> list[Hashable]:
        """Let locks lapse and time-to-live run out; returns the receivers that lost their session."""
        lost = []
        for session in list(self.sessions.values()):
            if session.owner is not None and session.locked_until <= now:
                lost.append(session.owner)
                self._lose_session(session)
        if not self.requires_session:
            for entry in [e for e in self._locks.values() if e.locked_until <= now]:
                self._return(entry, counted=True)
        for entry in [e for e in self.entries.values() if e.lock_token is None and e.expired(now)]:
            self._remove(entry)  # dead-lettering on expiry is off by default in Azure
        return lost


class Topic:
    def __init__(self, config: TopicConfig, subscriptions: list[Queue]):
        self.config = config
        self.subscriptions = subscriptions
        self._seen: dict[str, float] = {}  # message id -> when first accepted, oldest first
        self._sequence = 0

    def publish(self, envelopes: list[Envelope], now: float) -> list[Envelope]:
        """Store the messages (one, or a batch: all or none) in every subscription; returns the
        duplicates, which are accepted and dropped."""
        for envelope in envelopes:
            for subscription in self.subscriptions:
                if subscription.requires_session and not envelope.session_id:
                    raise BrokerError(
                        NOT_ALLOWED,
                        f"{subscription.path} requires sessions: the message must have a session id",
                    )
        dropped = []
        for envelope in envelopes:
            if self._duplicate(envelope, now):
                dropped.append(envelope)
                continue
            self._sequence += 1
            for subscription in self.subscriptions:
                subscription.enqueue(Entry(self._sequence, envelope, now))
        return dropped

    def _duplicate(self, envelope: Envelope, now: float) -> bool:
        if not self.config.requires_duplicate_detection or envelope.message_id is None:
            return False
        horizon = now - self.config.duplicate_detection_window
        while self._seen and next(iter(self._seen.values())) <= horizon:
            del self._seen[next(iter(self._seen))]
        if envelope.message_id in self._seen:
            return True
        self._seen[envelope.message_id] = now
        return False


def entity_path(address: str) -> str:
    """``amqps://host:port/Topic/Subscriptions/Sub`` or ``topic/subscriptions/sub`` -> the entity's
    path in lower case (entity names are case-insensitive in Service Bus)."""
    if "://" in address:
        address = address.split("://", 1)[1]
        address = address.split("/", 1)[1] if "/" in address else ""
    return address.strip("/").lower()


@dataclass
class Namespace:
    topics: dict[str, Topic]
    queues: dict[str, Queue]

    @classmethod
    def from_config(cls, config: ServiceBusConfig) -> Namespace:
        topics: dict[str, Topic] = {}
        queues: dict[str, Queue] = {}
        for tc in config.topics:
            subscriptions = [_subscription(tc, sc) for sc in tc.subscriptions]
            topics[tc.name.lower()] = Topic(tc, subscriptions)
            for subscription in subscriptions:
                queues[subscription.path] = subscription
                assert subscription.dead_letter is not None
                queues[subscription.dead_letter.path] = subscription.dead_letter
        return cls(topics, queues)

    def topic(self, path: str) -> Topic:
        topic = self.topics.get(path)
        if topic is None:
            what = "a subscription: send to its topic" if path in self.queues else "not a topic of this namespace"
            raise BrokerError(NOT_FOUND, f"The messaging entity '{path}' could not be found ({what}).")
        return topic

    def queue(self, path: str) -> Queue:
        queue = self.queues.get(path)
        if queue is None:
            raise BrokerError(NOT_FOUND, f"The messaging entity '{path}' could not be found.")
        return queue

    def entity(self, path: str) -> Topic | Queue:
        found = self.topics.get(path) or self.queues.get(path)
        if found is None:
            raise BrokerError(NOT_FOUND, f"The messaging entity '{path}' could not be found.")
        return found

    def expire(self, now: float) -> list[Hashable]:
        lost: list[Hashable] = []
        for queue in self.queues.values():
            lost.extend(queue.expire(now))
        return lost


def _subscription(topic: TopicConfig, sc: SubscriptionConfig) -> Queue:
    path = f"{topic.name}/subscriptions/{sc.name}".lower()
    dead_letter = Queue(path + DEAD_LETTER_SUFFIX, False, sc.lock_duration, sc.max_delivery_count)
    return Queue(path, sc.requires_session, sc.lock_duration, sc.max_delivery_count, dead_letter)
