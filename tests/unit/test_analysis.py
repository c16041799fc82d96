"""Analysis rules: evidence in, verdict out, with the numbers behind it."""

from __future__ import annotations

import pytest

from shared.domain.analysis import accumulate, combine, judge, wilson_lower_bound
from shared.domain.model import AnalysisSettings, Evidence, Measurement, ProviderKind, VersionStats

SETTINGS = AnalysisSettings(max_error_rate=0.05, max_latency_ms=300, min_requests=50)


def ev(canary, stable=(0, 0, None)):
    return Evidence(ProviderKind.HTTP, VersionStats(*canary), VersionStats(*stable))


CASES = [
    ("no requests at all is inconclusive, never a pass", ev((0, 0, None)), "inconclusive"),
    ("a few clean requests are not enough to judge", ev((10, 0, 20.0)), "inconclusive"),
    ("enough clean requests pass", ev((100, 1, 20.0)), "pass"),
    ("an error rate above the limit fails", ev((100, 10, 20.0)), "fail"),
    ("overwhelming errors fail before the minimum sample", ev((12, 12, 20.0)), "fail"),
    ("one error in a handful is not overwhelming evidence", ev((5, 1, 20.0)), "inconclusive"),
    ("latency above the limit fails", ev((100, 0, 520.0)), "fail"),
    ("a canary no worse than a degraded stable version passes", ev((100, 20, 20.0), (1000, 250, 20.0)), "pass"),
    ("a canary much worse than a degraded stable version fails", ev((100, 60, 20.0), (1000, 250, 20.0)), "fail"),
    ("latency no worse than a slow stable version passes", ev((100, 0, 700.0), (1000, 0, 650.0)), "pass"),
    (
        "a bad-looking canary waits while the stable version has too little traffic to compare",
        ev((100, 20, 20.0), (10, 5, 20.0)),
        "inconclusive",
    ),
    ("a canary far worse than even a thin stable baseline fails at once", ev((100, 50, 20.0), (10, 0, 20.0)), "fail"),
    ("with no stable traffic the canary is judged on the absolute limits", ev((100, 20, 20.0), (0, 0, None)), "fail"),
    ("latency well over a slow stable version fails", ev((100, 0, 1500.0), (1000, 0, 650.0)), "fail"),
]


@pytest.mark.parametrize(("evidence", "outcome"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_judge(evidence, outcome):
    verdict = judge(evidence, SETTINGS)
    assert verdict.outcome == outcome, verdict.reasons
    assert verdict.numbers["canaryRequests"] == evidence.canary.requests


def test_the_relative_rule_can_be_switched_off():
    settings = AnalysisSettings(max_error_rate=0.05, min_requests=50, relative_to_stable=False)
    assert judge(ev((100, 20, 20.0), (1000, 250, 20.0)), settings).outcome == "fail"


def test_a_failure_explains_itself_with_numbers():
    verdict = judge(ev((200, 40, 20.0), (2000, 2, 20.0)), SETTINGS)
    assert verdict.reasons == (
        "http: error rate 20.0% (40/200; lower bound 15.0%) is above the limit 5.0%; stable 0.1% (2/2000), margin 1.0%",
    )


def test_wilson_lower_bound_is_below_the_observed_rate_and_tightens_with_more_data():
    assert wilson_lower_bound(0, 0) == 0
    small, large = wilson_lower_bound(2, 10), wilson_lower_bound(200, 1000)
    assert 0 < small < 0.2 and small < large < 0.2


def test_sampling_providers_add_up_and_window_providers_replace():
    m1 = Measurement(ProviderKind.HTTP, VersionStats(10, 1, 10.0), VersionStats(10, 0, 10.0), cumulative=False)
    m2 = Measurement(ProviderKind.HTTP, VersionStats(30, 0, 30.0), VersionStats(10, 0, 10.0), cumulative=False)
    (held,) = accumulate(accumulate((), (m1,)), (m2,))
    assert held.canary == VersionStats(40, 1, 25.0)
    w1 = Measurement(ProviderKind.AZURE_MONITOR, VersionStats(10, 1, 10.0), VersionStats(5, 0, 10.0))
    w2 = Measurement(ProviderKind.AZURE_MONITOR, VersionStats(30, 2, 12.0), VersionStats(9, 0, 10.0))
    (held,) = accumulate(accumulate((), (w1,)), (w2,))
    assert held.canary == VersionStats(30, 2, 12.0)


def test_combining_verdicts_fails_on_any_failure_and_holds_on_any_doubt():
    good = judge(ev((100, 0, 20.0)), SETTINGS)
    doubt = judge(ev((3, 0, 20.0)), SETTINGS)
    bad = judge(ev((100, 50, 20.0)), SETTINGS)
    assert combine([good, doubt]).outcome == "inconclusive"
    assert combine([good, doubt, bad]).outcome == "fail"
    assert combine([good, good]).outcome == "pass"
    assert combine([]).outcome == "inconclusive"
