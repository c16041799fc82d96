"""The ledger of bad releases stopped before they reached more than their first step's share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.domain.ledger import ledger, stopped_early
from shared.domain.model import Phase, Release
from tests.builders import BLUE_GREEN_EVENT, CANARY_EVENT, event, spec

NOW = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


def rel(doc=None, **state) -> Release:
    return Release(spec=spec(doc if doc is not None else CANARY_EVENT), created_at=NOW, **state)


def test_only_a_release_rolled_back_at_or_before_its_first_step_was_stopped_early():
    assert stopped_early(rel(phase=Phase.ROLLED_BACK, step=0, weight=0, reached_users=True))
    assert stopped_early(rel(phase=Phase.ROLLED_BACK, step=-1)), "caught in validation, before any traffic"
    assert stopped_early(rel(BLUE_GREEN_EVENT, phase=Phase.ROLLED_BACK)), "blue-green, before the swap"
    assert not stopped_early(rel(phase=Phase.ROLLED_BACK, step=1)), "it had reached the second step"
    assert not stopped_early(rel(BLUE_GREEN_EVENT, phase=Phase.ROLLED_BACK, reached_production=True))
    assert not stopped_early(rel(phase=Phase.FAILED, step=0))


def test_the_ledger_counts_per_site_and_lists_the_stopped_newest_first():
    web = spec().target
    api = spec(BLUE_GREEN_EVENT).target
    phases = [
        (web.site_key, web.site, Phase.SUCCEEDED),
        (web.site_key, web.site, Phase.ROLLED_BACK),
        (web.site_key, web.site, Phase.ROLLED_BACK),
        (api.site_key, api.site, Phase.SUCCEEDED),
    ]
    older = rel(event(releaseId="web-1"), phase=Phase.ROLLED_BACK, step=0, finished_at=NOW - timedelta(hours=1))
    newer = rel(event(releaseId="web-2"), phase=Phase.ROLLED_BACK, step=0, finished_at=NOW)
    late = rel(event(releaseId="web-3"), phase=Phase.ROLLED_BACK, step=1, finished_at=NOW)
    sites = ledger(phases, [older, late, newer])
    by_key = {s.site_key: s for s in sites}
    assert by_key[web.site_key].outcomes == {"succeeded": 1, "rolledBack": 2}
    assert [r.id for r in by_key[web.site_key].stopped_early] == ["web-2", "web-1"]
    assert by_key[api.site_key].stopped_early == [] and by_key[api.site_key].outcomes == {"succeeded": 1}
