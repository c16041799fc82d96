"""One contract, two stores: the in-memory fake and Table Storage on real Azurite.

Every test runs against both, so the fake the unit tests rely on behaves like the real thing.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import UpdateMode

from shared.adapters.memory import InMemoryReleaseStore
from shared.adapters.table_rows import MAX_STRING_UTF16_UNITS, guard, table_key
from shared.adapters.table_store import TableReleaseStore
from shared.domain.lifecycle import new_release
from shared.domain.model import AuditEntry, Phase, SiteState
from shared.domain.schema import spec_fingerprint
from shared.ports import (
    ConcurrencyConflict,
    DuplicateRelease,
    EntityTooLarge,
    IdClaim,
    RejectedEvent,
    ReleaseIdConflict,
    ReleaseNotFound,
    ReleaseWrite,
    TokenUse,
    Versioned,
)
from tests.builders import BLUE_GREEN_EVENT, SUBSCRIPTION, body, event, harness, ingest, person, spec

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "table"])
def store(request):
    if request.param == "memory":
        return InMemoryReleaseStore()
    return request.getfixturevalue("table_store")


def create(store, release_id="web-1.4.2", site=None, at=NOW, **changes):
    s = spec(event(releaseId=release_id, **changes))
    decision = new_release(s, at, actor="ci", source="test")
    loaded = store.load_site(s.target.site_key)
    site_state = site or replace(loaded.value, active=release_id)
    store.commit(
        s.target.site_key,
        [ReleaseWrite(decision.release, None, decision.audit, spec_fingerprint(s))],
        Versioned(site_state, loaded.etag),
    )
    return store.load_release(release_id)


def note(message, phase=Phase.PENDING):
    return AuditEntry(NOW, "controller", "note", message, phase, phase, 0.0, {"n": message})


def test_a_created_release_reads_back_exactly(store):
    loaded = create(store)
    release = loaded.value
    assert release.id == "web-1.4.2" and release.phase is Phase.PENDING
    assert release.spec == spec(event(releaseId="web-1.4.2"))
    assert release.audit_seq == 1
    assert loaded.etag
    site = store.load_site(release.site_key)
    assert site.value.active == "web-1.4.2" and site.etag


def test_a_transition_and_its_audit_rows_commit_together_and_stay_gapless(store):
    loaded = create(store)
    moved = replace(loaded.value, phase=Phase.DEPLOYING, weight=0.0)
    store.commit(moved.site_key, [ReleaseWrite(moved, loaded.etag, (note("a"), note("b")))])
    again = store.load_release("web-1.4.2")
    assert again.value.phase is Phase.DEPLOYING and again.value.audit_seq == 3
    store.commit(moved.site_key, [ReleaseWrite(again.value, again.etag, (note("c"),))])
    audit = store.list_audit("web-1.4.2")
    assert [a.seq for a in audit] == [1, 2, 3, 4]
    assert [a.entry.message for a in audit][1:] == ["a", "b", "c"]
    assert audit[1].entry.details == {"n": "a"}


def test_a_stale_etag_is_refused_and_writes_nothing(store):
    loaded = create(store)
    first = replace(loaded.value, phase=Phase.DEPLOYING)
    store.commit(first.site_key, [ReleaseWrite(first, loaded.etag, (note("winner"),))])
    loser = replace(loaded.value, phase=Phase.CANCELLED)
    with pytest.raises(ConcurrencyConflict):
        store.commit(loser.site_key, [ReleaseWrite(loser, loaded.etag, (note("loser"),))])
    assert store.load_release("web-1.4.2").value.phase is Phase.DEPLOYING
    assert [a.entry.message for a in store.list_audit("web-1.4.2")][-1] == "winner"


def test_a_stale_site_row_fails_the_whole_transaction(store):
    loaded = create(store)
    site = store.load_site(loaded.value.site_key)
    store.commit(loaded.value.site_key, [], Versioned(replace(site.value, queued="x"), site.etag))
    moved = replace(loaded.value, phase=Phase.DEPLOYING)
    with pytest.raises(ConcurrencyConflict):
        store.commit(
            moved.site_key,
            [ReleaseWrite(moved, loaded.etag, (note("lost"),))],
            Versioned(replace(site.value, active=None), site.etag),
        )
    assert store.load_release("web-1.4.2").value.phase is Phase.PENDING
    assert len(store.list_audit("web-1.4.2")) == 1


def test_inserting_an_existing_release_is_a_duplicate(store):
    loaded = create(store)
    decision = new_release(loaded.value.spec, loaded.value.created_at, actor="ci", source="again")
    with pytest.raises(DuplicateRelease):
        store.commit(loaded.value.site_key, [ReleaseWrite(decision.release, None, decision.audit)])


def test_two_first_releases_of_a_new_site_cannot_both_create_its_row(store):
    a = spec(event(releaseId="a-1"))
    b = spec(event(releaseId="b-1"))
    fresh = store.load_site(a.target.site_key)
    da, db = (new_release(s, NOW, actor="ci", source="t") for s in (a, b))
    store.commit(
        a.target.site_key,
        [ReleaseWrite(da.release, None, da.audit)],
        Versioned(replace(fresh.value, active="a-1"), None),
    )
    with pytest.raises(ConcurrencyConflict):
        store.commit(
            b.target.site_key,
            [ReleaseWrite(db.release, None, db.audit)],
            Versioned(replace(fresh.value, active="b-1"), None),
        )
    assert store.find_release("b-1") is None


def test_claims_are_idempotent_and_keep_the_first_plan(store):
    first = IdClaim("r-1", "site", "fp-1", NOW)
    assert store.claim_release_id(first) == first
    assert store.claim_release_id(IdClaim("r-1", "site", "fp-2", NOW + timedelta(seconds=5))) == first


def test_a_ci_token_is_spent_once_and_keeps_its_first_event(store):
    first = TokenUse("https://issuer.example|jti-1", "r-1", "fp-1", NOW)
    assert store.claim_token(first) == first
    assert store.claim_token(TokenUse(first.token, "r-2", "fp-2", NOW + timedelta(seconds=5))) == first
    assert store.claim_token(TokenUse("https://issuer.example|jti/2#?", "r-2", "fp-2", NOW)).release_id == "r-2"


def test_the_due_index_moves_with_each_save_and_forgets_a_settled_release(store):
    loaded = create(store)
    (ref,) = store.list_active()
    assert (ref.release_id, ref.site_key, ref.due_at) == ("web-1.4.2", loaded.value.site_key, NOW)
    assert store.list_due(NOW - timedelta(seconds=1)) == [], "not due yet: not read"
    assert [r.release_id for r in store.list_due(NOW)] == ["web-1.4.2"]
    later = replace(loaded.value, next_check_at=NOW + timedelta(minutes=10))
    store.commit(later.site_key, [ReleaseWrite(later, loaded.etag, (note("baking"),))])
    assert store.list_due(NOW + timedelta(minutes=9)) == [], "moved, not copied"
    (moved,) = store.list_due(NOW + timedelta(minutes=10))
    assert moved.due_at == NOW + timedelta(minutes=10)
    assert store.due_ref(store.load_release("web-1.4.2").value) == moved
    reloaded = store.load_release("web-1.4.2")
    done = replace(reloaded.value, phase=Phase.SUCCEEDED, next_check_at=None)
    store.commit(done.site_key, [ReleaseWrite(done, reloaded.etag, (note("done", Phase.SUCCEEDED),))])
    assert store.list_active() == [], "settled: nothing will happen to it again"


def test_a_due_release_loads_with_its_site_row(store):
    loaded = create(store)
    (ref,) = store.list_due(NOW)
    release, site = store.load_due(ref)
    assert release.value == loaded.value and release.etag == loaded.etag
    assert site.value.active == "web-1.4.2" and site.etag == store.load_site(loaded.value.site_key).etag


def test_a_losing_writer_does_not_move_the_due_index(store):
    loaded = create(store)
    first = replace(loaded.value, next_check_at=NOW + timedelta(minutes=1))
    store.commit(first.site_key, [ReleaseWrite(first, loaded.etag, (note("winner"),))])
    second = replace(loaded.value, next_check_at=NOW + timedelta(minutes=5))
    with pytest.raises(ConcurrencyConflict):
        store.commit(second.site_key, [ReleaseWrite(second, loaded.etag, (note("loser"),))])
    assert [r.due_at for r in store.list_active()] == [NOW + timedelta(minutes=1)]


def test_an_admission_reads_the_site_its_own_row_and_the_active_and_queued_releases(store):
    site_key = spec().target.site_key
    fresh = store.load_admission(site_key, "web-1", NOW)
    assert (fresh.site.etag, fresh.existing, fresh.others) == (None, None, {})
    create(store, "web-1", at=NOW, site=SiteState(site_key, active="web-1"))
    loaded = store.load_site(site_key)
    create(store, "web-2", at=NOW + timedelta(minutes=1), site=SiteState(site_key, active="web-1", queued="web-2"))
    assert loaded.etag != store.load_site(site_key).etag
    view = store.load_admission(site_key, "web-3", NOW + timedelta(minutes=2))
    assert view.site.value.active == "web-1" and view.site.value.queued == "web-2"
    assert view.site.etag == store.load_site(site_key).etag
    assert view.existing is None
    assert {k: v.value for k, v in view.others.items()} == {
        "web-1": store.load_release("web-1").value,
        "web-2": store.load_release("web-2").value,
    }
    assert all(v.etag == store.load_release(k).etag for k, v in view.others.items())
    again = store.load_admission(site_key, "web-2", NOW + timedelta(minutes=1))
    assert again.existing.value == store.load_release("web-2").value, "a redelivery finds its own row"
    assert set(again.others) == {"web-1"}


def test_releases_saved_before_the_due_index_are_indexed_once(table_store):
    loaded = create(table_store, "web-1")
    done = create(table_store, "web-0", at=NOW - timedelta(hours=1), site=SiteState(spec().target.site_key))
    finished = replace(done.value, phase=Phase.SUCCEEDED, next_check_at=None)
    table_store.commit(finished.site_key, [ReleaseWrite(finished, done.etag, (note("done", Phase.SUCCEEDED),))])
    # What a release row looked like before the due index: no DueAt, no due row.
    pk = table_key(loaded.value.site_key)
    (due,) = table_store.list_active()
    table_store._releases.delete_entity(pk, f"due|{int(due.due_at.timestamp() * 1000):013d}|web-1")
    row = dict(table_store._releases.get_entity(pk, due.row))
    del row["DueAt"]
    table_store._releases.upsert_entity(row, mode=UpdateMode.REPLACE)
    assert table_store.list_active() == []
    fresh = TableReleaseStore(table_store._service, prefix=table_store._names["Releases"].removesuffix("Releases"))
    assert fresh.ensure_due_index() == 1, "the unsettled one; the succeeded one needs no entry"
    assert [(r.release_id, r.due_at) for r in fresh.list_active()] == [("web-1", NOW)]
    assert fresh.load_release("web-1").value.indexed_due == NOW
    again = TableReleaseStore(table_store._service, prefix=table_store._names["Releases"].removesuffix("Releases"))
    assert again.ensure_due_index() == 0, "done once per store: a marker says so"


def test_a_release_keeps_its_newest_measurements_numbered_without_gaps(store, monkeypatch):
    import shared.adapters.memory.store as memory_store
    import shared.adapters.table_store as table_store_module

    monkeypatch.setattr(memory_store, "MEASUREMENTS_KEPT", 3)
    monkeypatch.setattr(table_store_module, "MEASUREMENTS_KEPT", 3)
    loaded = create(store)
    for n in range(1, 6):
        measured = (({"verdict": "inconclusive", "n": 2 * n - 1}), {"verdict": "pass", "n": 2 * n})
        store.commit(loaded.value.site_key, [ReleaseWrite(loaded.value, loaded.etag, measurements=measured)])
        loaded = store.load_release("web-1.4.2")
        assert loaded.value.measured_seq == 2 * n
    kept = store.list_measurements("web-1.4.2")
    assert [(m.seq, m.record["n"]) for m in kept] == [(10, 10), (9, 9), (8, 8)], "the newest three, newest first"
    with pytest.raises(ReleaseNotFound):
        store.list_measurements("nope")


def test_due_releases_come_soonest_first_across_sites(store):
    create(store, "web-1", at=NOW + timedelta(minutes=2))
    other = spec(BLUE_GREEN_EVENT)
    d = new_release(other, NOW, actor="ci", source="t")
    store.commit(other.target.site_key, [ReleaseWrite(d.release, None, d.audit)])
    assert [r.release_id for r in store.list_due(NOW + timedelta(hours=1))] == [other.release_id, "web-1"]
    assert [r.release_id for r in store.list_due(NOW + timedelta(hours=1), limit=1)] == [other.release_id]


def test_a_release_cannot_be_inserted_under_an_id_claimed_for_another_site_or_plan(store):
    other = spec(event(target={"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg-x", "site": "elsewhere"}))
    store.claim_release_id(IdClaim(other.release_id, other.target.site_key, "fp-other", NOW))
    mine = new_release(spec(), NOW, actor="ci", source="t")
    with pytest.raises(ReleaseIdConflict):
        store.commit(mine.release.site_key, [ReleaseWrite(mine.release, None, mine.audit)])
    assert store.find_release(mine.release.id) is None


def test_unknown_releases_are_reported_as_missing(store):
    assert store.find_release("nope") is None
    with pytest.raises(ReleaseNotFound):
        store.load_release("nope")
    with pytest.raises(ReleaseNotFound):
        store.list_audit("nope")


def test_listing_filters_by_site_and_phase_and_pages_newest_first(store):
    for i in range(5):
        create(
            store, f"web-{i}", at=NOW + timedelta(minutes=i), site=SiteState(spec().target.site_key, active=f"web-{i}")
        )
    other = spec(BLUE_GREEN_EVENT)
    d = new_release(other, NOW, actor="ci", source="t")
    store.commit(other.target.site_key, [ReleaseWrite(d.release, None, d.audit)])
    everything = store.list_releases(limit=50)
    assert len(everything.items) == 6 and everything.cursor is None
    site_key = spec().target.site_key
    first = store.list_releases(site_key=site_key, limit=2)
    assert [s.release_id for s in first.items] == ["web-4", "web-3"]
    second = store.list_releases(site_key=site_key, limit=2, cursor=first.cursor)
    third = store.list_releases(site_key=site_key, limit=2, cursor=second.cursor)
    assert [s.release_id for s in second.items + third.items] == ["web-2", "web-1", "web-0"]
    assert third.cursor is None
    assert [s.release_id for s in store.list_releases(site="CONTOSO-API").items] == ["api-2.0.0"]
    assert store.list_releases(phase=Phase.SHIFTING).items == []
    assert len(store.list_releases(phase=Phase.PENDING).items) == 6
    with pytest.raises(ValueError, match="cursor"):
        store.list_releases(cursor="bm90LWEtY3Vyc29y")


def test_a_rejected_event_keeps_its_whole_body_and_reason(store):
    raw = b'{"broken": ' + b"\xff" * 100
    store.save_rejected(RejectedEvent(NOW, "serviceBus", "m-1", "the event is not UTF-8 text", [("", "bad")], raw))
    (row,) = store.list_rejected("2026-11-26")
    assert row["body"] == raw and row["reason"] == "the event is not UTF-8 text" and row["messageId"] == "m-1"
    assert row["errors"] == [["", "bad"]] and row["bodyLength"] == len(raw)


def test_rejections_are_listed_per_day_newest_first_up_to_the_limit(store):
    for minute in range(5):
        at = NOW + timedelta(minutes=minute)
        store.save_rejected(RejectedEvent(at, "http", f"m-{minute}", f"reason {minute}", [], b"{}"))
    store.save_rejected(RejectedEvent(NOW + timedelta(days=1), "http", "tomorrow", "later", [], b"{}"))
    assert [r["messageId"] for r in store.list_rejected("2026-11-26", 3)] == ["m-4", "m-3", "m-2"]
    assert [r["messageId"] for r in store.list_rejected("2026-11-27")] == ["tomorrow"]
    assert store.list_rejected("2026-11-25") == []


def test_a_large_rejected_body_is_split_across_properties(table_store):
    raw = bytes(range(256)) * 1024  # 256 KiB, the largest Service Bus standard message
    table_store.save_rejected(RejectedEvent(NOW, "serviceBus", None, "too large", [], raw))
    (row,) = table_store.list_rejected("2026-11-26")
    assert row["body"] == raw and not row["bodyTruncated"]


def test_keys_escape_the_characters_table_storage_forbids():
    assert table_key("a/b\\c#d?e%f\x01") == "a%2Fb%5Cc%23d%3Fe%25f%01"


def test_oversized_properties_and_batches_are_refused_before_they_reach_storage(table_store):
    with pytest.raises(EntityTooLarge):
        guard({"RowKey": "x", "P": "x" * (MAX_STRING_UTF16_UNITS + 1)})
    with pytest.raises(EntityTooLarge):
        guard({"RowKey": "x", **{f"P{i}": "y" * 16000 for i in range(40)}})
    loaded = create(table_store)
    notes = tuple(note(str(i)) for i in range(100))
    with pytest.raises(EntityTooLarge):
        table_store.commit(loaded.value.site_key, [ReleaseWrite(loaded.value, loaded.etag, notes)])
    assert len(table_store.list_audit("web-1.4.2")) == 1


def test_concurrent_deliveries_make_one_release_on_azurite(table_store):
    h = harness(store=table_store)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: ingest(h.service, body(event()), message_id="m", source="sb"), range(6)))
    assert [r.outcome for r in results].count("created") == 1
    assert [s.release_id for s in table_store.list_releases().items] == ["web-1.4.2"]
    created = [a for a in table_store.list_audit("web-1.4.2") if a.entry.action == "release.created"]
    assert len(created) == 1


def test_concurrent_overrides_on_azurite_never_lose_an_update(table_store):
    from shared.domain.lifecycle import OverrideRefused
    from shared.domain.model import OverrideKind

    h = harness(store=table_store)
    ingest(h.service, body(event()), message_id=None, source="http")
    barrier = threading.Barrier(4)

    def pause(_):
        barrier.wait()
        try:
            h.service.override("web-1.4.2", OverrideKind.PAUSE, actor=person("p"), reason="race")
            return "ok"
        except OverrideRefused:
            return "refused"

    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(pause, range(4)))
    assert outcomes == ["ok", "refused", "refused", "refused"]
    audit = table_store.list_audit("web-1.4.2")
    assert [a.entry.action for a in audit].count("override.pause") == 1
    assert [a.seq for a in audit] == list(range(1, len(audit) + 1))


def test_a_sites_releases_are_read_whole_in_one_go(store):
    create(store, "web-1", at=NOW)
    create(store, "web-2", at=NOW + timedelta(minutes=1), site=SiteState(spec().target.site_key, active="web-2"))
    other = spec(BLUE_GREEN_EVENT)
    store.commit(other.target.site_key, [ReleaseWrite(new_release(other, NOW, actor="ci", source="t").release, None)])
    found = store.list_site_releases(spec().target.site_key)
    assert [v.value.id for v in found] == ["web-2", "web-1"]
    assert all(v.etag for v in found) and found[0].value == store.load_release("web-2").value


def test_verdict_counts_survive_a_save(store):
    loaded = create(store)
    counted = replace(loaded.value, verdicts=(("fail", 1), ("inconclusive", 3)))
    store.commit(counted.site_key, [ReleaseWrite(counted, loaded.etag, (note("measured"),))])
    assert store.load_release("web-1.4.2").value.verdicts == (("fail", 1), ("inconclusive", 3))
