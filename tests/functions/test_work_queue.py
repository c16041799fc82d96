"""The work queue through the indexed app: the timer puts late releases on a real Storage queue
(Azurite's queue service), the queue trigger reconciles the release a message names, and a message
the controller did not write is dropped, never retried."""

from __future__ import annotations

import threading
import uuid

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from devstack.azurite import start_azurite
from shared import bootstrap
from shared.adapters.work_queue import StorageWorkQueue, decode, encode
from shared.domain.model import Phase
from shared.ports import StoreUnavailable
from tests.builders import CANARY_EVENT, body, ingest

RID = "web-1.4.2"


class Invocation:
    def __init__(self) -> None:
        self.invocation_id = f"invocation-{uuid.uuid4().hex[:8]}"
        self.function_name = "reconcile_timer"
        self.thread_local_storage = threading.local()


@pytest.fixture(scope="module")
def queue_service():
    server = start_azurite(service="queue")
    yield server
    server.stop()


@pytest.fixture
def queued(app, queue_service):
    """The app with a work queue: every save schedules a message, the timer re-sends late ones."""
    queue = StorageWorkQueue.from_connection_string(queue_service.connection_string, f"work{uuid.uuid4().hex[:12]}")
    queue.ensure()
    app.service.work_queue = queue
    container = bootstrap.container()
    bootstrap.use(bootstrap.Container(container.settings, app.service, {**container.parts, "work_queue": queue}))
    yield app, queue
    queue.client.delete_queue()


def received(queue: StorageWorkQueue) -> list:
    messages = list(queue.client.receive_messages(max_messages=32, visibility_timeout=1))
    for message in messages:
        queue.client.delete_message(message)
    return [decode(m.content) for m in messages]


def worker(indexed, content: str | bytes) -> None:
    raw = content.encode() if isinstance(content, str) else content
    indexed["reconcile_worker"].get_user_function()(func.QueueMessage(id="m-1", body=raw))


def test_a_save_schedules_a_message_the_worker_then_acts_on(indexed, queued):
    app, queue = queued
    ingest(app.service, body(CANARY_EVENT), message_id=None, source="http")
    assert received(queue) == [], "invisible until the release is due"
    ref = app.store.due_ref(app.service.get(RID))
    app.clock.advance(15)
    worker(indexed, encode(ref))
    assert app.service.get(RID).phase is Phase.VALIDATING


def test_the_timer_sends_a_late_release_again(indexed, queued):
    app, queue = queued
    ingest(app.service, body(CANARY_EVENT), message_id=None, source="http")
    app.clock.advance(15 + 60)  # its own message was lost: late by the grace
    indexed["reconcile_timer"].get_user_function()(TimerRequest(past_due=False), Invocation())
    (ref,) = received(queue)
    assert ref.release_id == RID
    assert app.service.get(RID).phase is Phase.DEPLOYING, "the timer only sends; the worker reconciles"
    worker(indexed, encode(ref))
    assert app.service.get(RID).phase is Phase.VALIDATING


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe", "not json", "[]", '{"releaseId": 1}', '{"releaseId": "x", "siteKey": "y", "dueAt": "yesterday"}'],
)
def test_a_message_the_controller_did_not_write_is_dropped_not_retried(indexed, queued, content):
    worker(indexed, content)  # returns: the message completes


def test_a_storage_outage_raises_so_the_queue_retries_the_message(indexed, queued, monkeypatch):
    app, _ = queued
    ingest(app.service, body(CANARY_EVENT), message_id=None, source="http")
    ref = app.store.due_ref(app.service.get(RID))

    def down(*args, **kwargs):
        raise StoreUnavailable("storage answered 503")

    monkeypatch.setattr(app.store, "load_due", down)
    with pytest.raises(StoreUnavailable):
        worker(indexed, encode(ref))


def test_the_local_hosts_queue_trigger_deletes_what_succeeds_and_poisons_what_keeps_failing(queue_service):
    import time

    from devstack.queue_trigger import QueueOptions, QueueTrigger, QueueTriggerListener

    name = f"local{uuid.uuid4().hex[:12]}"
    seen: list[bytes] = []

    def handler(message: func.QueueMessage) -> None:
        seen.append(message.get_body())
        if message.get_body() == b"bad":
            raise RuntimeError("always fails")

    listener = QueueTriggerListener(
        QueueTrigger("t", name, "WorkQueue", handler),
        queue_service.connection_string,
        QueueOptions(batch_size=2, max_dequeue_count=3, visibility_timeout=0.0, max_polling_interval=0.1),
    ).start()
    try:
        sender = StorageWorkQueue.from_connection_string(queue_service.connection_string, name)
        sender.client.send_message("good")
        sender.client.send_message("bad")
        deadline = time.monotonic() + 20
        while (listener.processed, listener.poisoned) != (1, 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (listener.processed, listener.poisoned) == (1, 1)
        assert seen.count(b"bad") == 3 and seen.count(b"good") == 1
        poison = StorageWorkQueue.from_connection_string(queue_service.connection_string, f"{name}-poison")
        assert [m.content for m in poison.client.receive_messages()] == ["bad"]
    finally:
        listener.stop()
