"""Fan-out over the work queue, on the service layer: every save schedules the release's next message
at its due time, the timer is the safety net for lost ones, and duplicates cost one read."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.adapters.memory import RecordingWorkQueue
from shared.domain.model import OverrideKind, Phase
from shared.service.scheduling import resend_now
from tests.builders import BLUE_GREEN_EVENT, CANARY_EVENT, body, harness, ingest, person

RID = "web-1.4.2"


class CountingStore:
    """The in-memory store, counting reads and commits (what a message costs)."""

    def __init__(self, inner):
        self.inner = inner
        self.reads = 0
        self.commits = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def load_due(self, ref):
        self.reads += 1
        return self.inner.load_due(ref)

    def commit(self, *args, **kwargs):
        self.commits += 1
        return self.inner.commit(*args, **kwargs)


def queued_harness():
    h = harness()
    h.service.work_queue = RecordingWorkQueue()
    return h


def test_a_new_release_gets_one_message_for_when_it_is_next_due():
    h = queued_harness()
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")
    ((ref, delay),) = h.service.work_queue.take()
    release = h.service.get(RID)
    assert release.phase is Phase.DEPLOYING, "started at once, not at the next tick"
    assert (ref.release_id, ref.due_at) == (RID, release.next_check_at)
    assert delay == pytest.approx(15), "visible when the deploy is next polled"


def test_each_reconcile_schedules_exactly_one_message_at_the_release_due_time():
    h = queued_harness()
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")
    h.service.work_queue.take()
    for _ in range(30):
        ref_before = h.store.due_ref(h.service.get(RID))
        h.clock.advance((ref_before.due_at - h.clock.now()).total_seconds())
        h.service.work(ref_before)
        sent = h.service.work_queue.take()
        release = h.service.get(RID)
        if release.settled:
            assert sent == []
            break
        assert len(sent) == 1, "one message per release per reconcile, however many saves it took"
        (ref, delay), now = sent[0], h.clock.now()
        assert ref.due_at == release.next_check_at and delay == (ref.due_at - now).total_seconds() > 0
    assert h.service.get(RID).phase is Phase.SUCCEEDED


def test_a_duplicate_message_costs_one_read_and_writes_nothing():
    h = queued_harness()
    counting = CountingStore(h.store)
    h.service.store = counting
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")
    ((ref, _),) = h.service.work_queue.take()
    h.clock.advance(15)
    assert h.service.work(ref).outcome == "advanced"
    counting.reads = counting.commits = 0
    result = h.service.work(ref)  # delivered again
    assert result.outcome == "not-due" and (counting.reads, counting.commits) == (1, 0)
    assert h.service.work_queue.take()[1:] == []


def test_a_transition_reads_the_release_with_its_site_once_and_commits_once():
    h = queued_harness()
    counting = CountingStore(h.store)
    h.service.store = counting
    ingest(h.service, body(BLUE_GREEN_EVENT), message_id=None, source="http")
    ((ref, _),) = h.service.work_queue.take()
    h.clock.advance(15)
    counting.reads = counting.commits = 0
    assert h.service.work(ref).phase is Phase.VALIDATING
    assert (counting.reads, counting.commits) == (1, 1)


def test_a_lost_message_is_sent_again_by_the_timer_after_the_grace():
    h = queued_harness()
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")
    h.service.work_queue.take()  # lost
    due = h.service.get(RID).next_check_at
    h.clock.advance(30)
    report = h.service.dispatch_due(h.service.work_queue, period_seconds=30, grace_seconds=60)
    assert report.sent == [] and report.due == 0, "within the grace its own message may still come"
    h.clock.advance(60)
    report = h.service.dispatch_due(h.service.work_queue, period_seconds=30, grace_seconds=60)
    assert report.sent == [RID]
    ((ref, delay),) = h.service.work_queue.take()
    assert (ref.due_at, delay) == (due, 0)
    h.clock.advance(30)
    assert h.service.dispatch_due(h.service.work_queue, period_seconds=30, grace_seconds=60).sent == [], (
        "sent once per grace while it stays due, not at every tick"
    )
    h.service.work(ref)
    assert h.service.get(RID).next_check_at > h.clock.now()


def test_a_message_that_could_not_be_sent_is_made_up_for_and_the_save_stands():
    h = queued_harness()
    h.service.work_queue.failures = 1
    assert ingest(h.service, body(CANARY_EVENT), message_id=None, source="http").outcome == "created"
    assert h.service.work_queue.take() == []
    h.clock.advance(15 + 60 + 1)
    assert h.service.dispatch_due(h.service.work_queue, period_seconds=30, grace_seconds=60).sent == [RID]


def test_an_override_wakes_the_release_with_a_message():
    h = queued_harness()
    ingest(h.service, body(CANARY_EVENT), message_id=None, source="http")
    h.service.work_queue.take()
    h.service.override(RID, OverrideKind.PAUSE, actor=person("pat"), reason="look")
    ((ref, delay),) = h.service.work_queue.take()
    assert ref.release_id == RID and delay >= 0


@pytest.mark.parametrize(
    ("late", "sent"),
    [(0, False), (59, False), (60, True), (89, True), (90, False), (119, False), (120, True), (150, False)],
)
def test_the_timer_resends_a_stuck_release_once_per_grace(late, sent):
    due = harness().clock.now()
    assert resend_now(due, due + timedelta(seconds=late), period=30, grace=60) is sent
