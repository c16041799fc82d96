"""AMQP message encoding the way Service Bus handles it: a stored message keeps the sender's
sections byte for byte (properties, application properties, body); on delivery the broker writes
its own header (delivery count) and message annotations (sequence number, enqueued time, locked
until), and a dead-lettered message gains ``DeadLetterReason`` / ``DeadLetterErrorDescription``
application properties. A batch the SDK sends (``ServiceBusMessageBatch``, or a list given to
``send_messages``) is split into its messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proton import Array, Data, Described, symbol, timestamp, uint, ulong

from devstack.servicebus.broker import Entry, Envelope

HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS, PROPERTIES, APPLICATION_PROPERTIES = range(0x70, 0x75)
DATA, AMQP_SEQUENCE, AMQP_VALUE, FOOTER = range(0x75, 0x79)
BODY = (DATA, AMQP_SEQUENCE, AMQP_VALUE)
_SYMBOLIC = {
    "amqp:header:list": HEADER,
    "amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
    "amqp:message-annotations:map": MESSAGE_ANNOTATIONS,
    "amqp:properties:list": PROPERTIES,
    "amqp:application-properties:map": APPLICATION_PROPERTIES,
    "amqp:data:binary": DATA,
    "amqp:amqp-sequence:list": AMQP_SEQUENCE,
    "amqp:amqp-value:*": AMQP_VALUE,
    "amqp:footer:map": FOOTER,
}

SEQUENCE_NUMBER = symbol("x-opt-sequence-number")
ENQUEUED_TIME = symbol("x-opt-enqueued-time")
LOCKED_UNTIL = symbol("x-opt-locked-until")
SCHEDULED_ENQUEUE_TIME = symbol("x-opt-scheduled-enqueue-time")
DEAD_LETTER_REASON = "DeadLetterReason"
DEAD_LETTER_DESCRIPTION = "DeadLetterErrorDescription"
# .NET ticks (100 ns since 0001-01-01) at the Unix epoch: how Service Bus writes some times.
DOTNET_EPOCH_TICKS = 621355968000000000


@dataclass(frozen=True)
class Section:
    code: int
    raw: bytes
    value: Any


def owned(value: Any) -> Any:
    """Decoded values may point into proton's buffers (memoryview): copy them out."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, Described):
        return Described(value.descriptor, owned(value.value))
    if isinstance(value, dict):
        return {owned(k): owned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [owned(v) for v in value]
    if isinstance(value, Array):
        return Array(value.descriptor, value.type, *(owned(v) for v in value.elements))
    return value


def split(payload: bytes) -> list[Section]:
    """The sections of an encoded message; ValueError when it is not one."""
    sections = []
    position = 0
    while position < len(payload):
        data = Data()
        try:
            used = data.decode(payload[position:])
            value = data.get_object()
        except Exception as exc:  # proton raises its own DataException, or KeyError on unknown codes
            raise ValueError(f"not an AMQP message: {exc}") from None
        if used <= 0 or not isinstance(value, Described):
            raise ValueError("not an AMQP message: a section is not a described value")
        descriptor = value.descriptor
        code = _SYMBOLIC.get(str(descriptor)) if isinstance(descriptor, symbol) else int(descriptor)
        if code is None or not HEADER <= code <= FOOTER:
            raise ValueError(f"not an AMQP message: unknown section {descriptor!r}")
        sections.append(Section(code, bytes(payload[position : position + used]), owned(value.value)))
        position += used
    return sections


def _encode(code: int, value: Any) -> bytes:
    data = Data()
    data.put_object(Described(ulong(code), value))
    return bytes(data.encode())


def unbatch(payload: bytes) -> list[bytes]:
    """A batch is a message whose data sections each hold a whole encoded message (the SDK marks
    it with message format 0x80013700, which proton does not surface): return those messages."""
    sections = split(payload)
    data = [s.value for s in sections if s.code == DATA]
    if not data or any(s.code in (AMQP_SEQUENCE, AMQP_VALUE) for s in sections):
        return [payload]
    try:
        if all(any(s.code in BODY for s in split(inner)) for inner in data):
            return data
    except ValueError:
        pass
    return [payload]


def envelope(payload: bytes) -> Envelope:
    """Read what the broker needs (message id, session id, time to live) from a sent message."""
    sections = split(payload)
    if not any(s.code in BODY for s in sections):
        raise ValueError("the message has no body section")
    properties = next((s.value for s in sections if s.code == PROPERTIES), None) or []
    header = next((s.value for s in sections if s.code == HEADER), None) or []
    annotations = next((s.value for s in sections if s.code == MESSAGE_ANNOTATIONS), None) or {}
    if SCHEDULED_ENQUEUE_TIME in annotations:
        raise NotImplementedError("a message scheduled for later (x-opt-scheduled-enqueue-time)")
    message_id = properties[0] if len(properties) > 0 else None
    session_id = properties[10] if len(properties) > 10 else None
    ttl_ms = header[2] if len(header) > 2 else None
    return Envelope(
        message_id=None if message_id is None else str(message_id),
        session_id=None if session_id is None else str(session_id),
        time_to_live=None if not ttl_ms else int(ttl_ms) / 1000.0,
        payload=payload,
    )


def _ms(seconds: float) -> timestamp:
    return timestamp(int(seconds * 1000))


def delivered(entry: Entry, *, locked: bool) -> bytes:
    """The message as the broker hands it out: the sender's sections (without its delivery
    annotations, which were for the hop to the broker) under the broker's header and annotations."""
    sections = split(entry.envelope.payload)
    header = list(next((s.value for s in sections if s.code == HEADER), None) or [])
    header += [None] * (5 - len(header))
    header[3] = entry.deliveries <= 1  # first-acquirer
    header[4] = uint(max(entry.deliveries - 1, 0))
    annotations = dict(next((s.value for s in sections if s.code == MESSAGE_ANNOTATIONS), None) or {})
    annotations[SEQUENCE_NUMBER] = entry.sequence_number
    annotations[ENQUEUED_TIME] = _ms(entry.enqueued_at)
    if locked:
        annotations[LOCKED_UNTIL] = _ms(entry.locked_until)
    out = [_encode(HEADER, header), _encode(MESSAGE_ANNOTATIONS, annotations)]
    dead = entry.dead_letter_reason is not None
    for section in sections:
        if section.code in (HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS):
            continue
        if dead and section.code == APPLICATION_PROPERTIES:
            continue  # written again, with the reason, before the body
        if dead and section.code in BODY:
            out.append(_dead_letter_properties(entry, sections))
            dead = False
        out.append(section.raw)
    return b"".join(out)


def _dead_letter_properties(entry: Entry, sections: list[Section]) -> bytes:
    properties = dict(next((s.value for s in sections if s.code == APPLICATION_PROPERTIES), None) or {})
    properties[DEAD_LETTER_REASON] = entry.dead_letter_reason or ""
    properties[DEAD_LETTER_DESCRIPTION] = entry.dead_letter_description or ""
    return _encode(APPLICATION_PROPERTIES, properties)


def ticks(seconds: float) -> int:
    return int(seconds * 10_000_000) + DOTNET_EPOCH_TICKS
