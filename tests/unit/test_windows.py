"""Deployment windows and freezes, on an injected clock, across both daylight-saving changes of
Europe/Berlin in 2026 (29 March: 02:00 CET -> 03:00 CEST; 25 October: 03:00 CEST -> 02:00 CET)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.windows import WindowError, parse_days, parse_schedule, shut

BERLIN_WORKDAYS = [{"days": "Mon-Thu", "from": "09:00", "to": "16:00", "timeZone": "Europe/Berlin"}]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("now", "open_", "until"),
    [
        # Winter (CET, UTC+1): 09:00 local is 08:00 UTC.
        ("2026-03-26T08:30:00+00:00", True, None),
        ("2026-03-26T07:30:00+00:00", False, "2026-03-26T08:00:00+00:00"),
        # Thursday 16:00 CET closes it until Monday, which is in summer time: 09:00 CEST is 07:00 UTC.
        ("2026-03-26T15:30:00+00:00", False, "2026-03-30T07:00:00+00:00"),
        ("2026-03-30T07:00:00+00:00", True, None),
        ("2026-03-30T06:59:00+00:00", False, "2026-03-30T07:00:00+00:00"),
        # Autumn: Thursday 22 October is CEST; Monday 26 October is CET again: 09:00 is 08:00 UTC.
        ("2026-10-22T14:30:00+00:00", False, "2026-10-26T08:00:00+00:00"),
        ("2026-10-26T07:30:00+00:00", False, "2026-10-26T08:00:00+00:00"),
    ],
)
def test_a_window_opens_at_local_time_whatever_the_daylight_saving(now, open_, until):
    schedule = parse_schedule(BERLIN_WORKDAYS, [])
    closed = shut(schedule, at(now))
    assert (closed is None) == open_
    if closed is not None:
        assert closed.until == at(until) and "outside the deployment windows" in closed.why


def test_a_freeze_shuts_even_an_open_window_and_says_until_when():
    schedule = parse_schedule(
        BERLIN_WORKDAYS,
        [
            {"from": "2026-12-21", "to": "2027-01-04T00:00", "timeZone": "Europe/Berlin", "reason": "year end"},
            {"days": "Fri", "from": "00:00", "to": "00:00", "timeZone": "Europe/Berlin", "reason": "no Fridays"},
        ],
    )
    closed = shut(schedule, at("2026-12-22T10:00:00+00:00"))  # a Tuesday, in the window, in the freeze
    assert closed is not None and closed.why.startswith("year end")
    assert closed.until == at("2027-01-04T08:00:00+00:00"), "the freeze ends on a Monday; the window opens at 09:00"
    assert shut(schedule, at("2026-12-17T10:00:00+00:00")) is None
    friday = shut(schedule, at("2026-11-27T10:00:00+00:00"))
    assert friday is not None and friday.why.startswith("no Fridays")


def test_no_window_means_always_open_and_a_never_ending_freeze_has_no_until():
    assert shut(parse_schedule([], []), at("2026-11-27T03:00:00+00:00")) is None
    forever = parse_schedule([], [{"from": "2026-01-01", "to": "2099-01-01", "reason": "decommissioned"}])
    closed = shut(forever, at("2026-11-27T03:00:00+00:00"))
    assert closed is not None and closed.until is None


def test_bad_windows_are_named():
    assert parse_days("Fri-Mon") == frozenset({4, 5, 6, 0})
    for doc, message in [
        ({"days": "Funday", "from": "09:00", "to": "16:00"}, "days are Mon..Sun"),
        ({"days": "Mon", "from": "9", "to": "16:00"}, "is not a time of day"),
        ({"days": "Mon", "from": "09:00", "to": "16:00", "timeZone": "Mars/Base"}, "not an IANA time zone"),
    ]:
        with pytest.raises(WindowError, match=message):
            parse_schedule([doc], [])
    with pytest.raises(WindowError, match="ends before it starts"):
        parse_schedule([], [{"from": "2026-02-01", "to": "2026-01-01"}])
    for start, end in (("22:00", "06:00"), ("09:00", "09:00")):
        with pytest.raises(WindowError, match="ends before it starts"):
            parse_schedule([{"days": "Mon", "from": start, "to": end}], [])
    assert parse_schedule([{"days": "Mon", "from": "22:00", "to": "00:00"}], []).windows[0].end.hour == 0
