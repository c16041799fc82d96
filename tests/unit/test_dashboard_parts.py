"""The dashboard's pure parts: the chart's geometry and the forms' tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.dashboard import forms
from shared.dashboard.chart import share_of, timeline
from shared.domain.model import Actor, ActorKind, Role

T0 = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)


def record(minute, phase="shifting", weight=10.0, errors=0, requests=100, latency=120.0):
    return {
        "at": (T0 + timedelta(minutes=minute)).isoformat(),
        "phase": phase,
        "weight": weight,
        "numbers": {
            "canaryErrorRate": errors / requests,
            "stableErrorRate": 0.0,
            "canaryLatencyMs": latency,
            "stableLatencyMs": 100.0,
            "maxErrorRate": 0.05,
            "maxLatencyMs": 500.0,
        },
    }


def test_one_point_per_measurement_in_every_series_left_to_right():
    chart = timeline([record(0), record(1, weight=50), record(2, phase="guarding", weight=0, errors=20)])
    assert chart is not None and chart.measurements == 3
    share, errors, latency = chart.panels
    (series,) = share.series
    assert [p.label.split(": ")[1] for p in series.points] == ["10%", "50%", "100%"]
    xs = [p.x for p in series.points]
    assert xs == sorted(xs) and xs[0] < xs[-1]
    assert [len(s.points) for s in errors.series] == [3, 3]
    assert errors.limit is not None and errors.limit[1] == "limit 5%"
    highest = min(p.y for p in errors.series[0].points)  # SVG y grows downwards
    assert highest < errors.limit[0], "a 20% error rate is drawn above the 5% limit"
    assert latency.limit is not None


def test_no_measurement_no_chart_and_the_guard_window_is_all_traffic():
    assert timeline([]) is None
    assert share_of({"phase": "guarding", "weight": 0}) == 100.0
    assert share_of({"phase": "shifting", "weight": 25}) == 25.0


OLGA = Actor(id="aad:t/olga", name="olga", kind=ActorKind.PERSON, roles=frozenset({Role.OPERATOR}))
RITA = Actor(id="aad:t/rita", name="rita", kind=ActorKind.PERSON, roles=frozenset({Role.READER}))


def test_a_token_is_bound_to_the_person_the_release_and_the_key_and_expires():
    token = forms.token("key", OLGA, "web-1", now=1000)
    forms.check_token("key", OLGA, "web-1", token, now=1010)
    for who, release, key, now in [
        (RITA, "web-1", "key", 1010),
        (OLGA, "web-2", "key", 1010),
        (OLGA, "web-1", "other", 1010),
        (OLGA, "web-1", "key", 1000 + forms.TOKEN_LIFETIME_SECONDS + 1),
    ]:
        with pytest.raises(forms.FormRefused):
            forms.check_token(key, who, release, token, now=now)
    with pytest.raises(forms.FormRefused):
        forms.check_token("key", OLGA, "web-1", "garbage", now=1010)


def test_only_same_origin_forms_are_accepted():
    forms.check_same_origin({"sec-fetch-site": "same-origin"})
    forms.check_same_origin({"origin": "https://ctl.example", "host": "ctl.example"})
    for headers in (
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"origin": "https://evil.example", "host": "ctl.example"},
        {"host": "ctl.example"},
    ):
        with pytest.raises(forms.FormRefused):
            forms.check_same_origin(headers)


def test_a_form_is_bounded():
    assert forms.parse_form(b"reason=a+b&token=x&reason=c") == {"reason": "c", "token": "x"}
    with pytest.raises(ValueError, match="the limit"):
        forms.parse_form(b"x" * (forms.MAX_FORM_BYTES + 1))
    with pytest.raises(ValueError, match="UTF-8"):
        forms.parse_form(b"\xff")
