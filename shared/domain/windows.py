"""Deployment windows and freezes: when the platform team's policy lets releases start and advance.

Pure: the rules and a time in, whether it is open (and until when it stays shut) out. Times of day
are local to each rule's time zone (IANA names, daylight saving included); a window or a freeze
that crosses midnight is written as two. A site with no window is always open, except in a freeze.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# How far ahead the next opening is looked for; beyond it a schedule is "shut until further notice".
HORIZON_DAYS = 400
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class WindowError(ValueError):
    """A window or freeze that cannot be understood; the message names what is wrong."""


@cache
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowError(f"{name!r} is not an IANA time zone (like Europe/Berlin)") from None


def parse_days(text: str) -> frozenset[int]:
    """``Mon-Thu``, ``Sat,Sun``, ``Mon-Wed,Fri`` -> weekday numbers (Monday 0)."""
    days: set[int] = set()
    for part in filter(None, (p.strip().lower() for p in text.split(","))):
        first, _, last = part.partition("-")
        if first[:3] not in DAYS or (last and last[:3] not in DAYS):
            raise WindowError(f"{text!r}: days are Mon..Sun, as ranges (Mon-Thu) or lists (Sat,Sun)")
        a, b = DAYS.index(first[:3]), DAYS.index((last or first)[:3])
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    if not days:
        raise WindowError(f"{text!r} names no day")
    return frozenset(days)


def parse_time(text: str) -> time:
    found = _TIME.match(text.strip())
    if not found:
        raise WindowError(f"{text!r} is not a time of day HH:MM")
    return time(int(found.group(1)), int(found.group(2)))


@dataclass(frozen=True)
class Weekly:
    """Every week on ``days``, from ``start`` to ``end`` local time in ``tz`` (``end`` 24:00 is written 00:00)."""

    days: frozenset[int]
    start: time
    end: time
    tz: str

    def contains(self, when: datetime) -> bool:
        local = when.astimezone(zone(self.tz))
        after_start = local.time() >= self.start
        before_end = self.end == time(0) or local.time() < self.end
        return local.weekday() in self.days and after_start and before_end

    def edges(self, day: date) -> list[datetime]:
        """The instants this rule starts and ends on local ``day``."""
        if day.weekday() not in self.days:
            return []
        tz = zone(self.tz)
        out = [datetime.combine(day, self.start, tzinfo=tz)]
        out.append(datetime.combine(day + timedelta(days=1) if self.end == time(0) else day, self.end, tzinfo=tz))
        return out

    def describe(self) -> str:
        names = ",".join(DAYS[d].capitalize() for d in sorted(self.days))
        return f"{names} {self.start:%H:%M}-{self.end:%H:%M} {self.tz}"


@dataclass(frozen=True)
class Span:
    """Once, from ``start`` to ``end`` (aware instants)."""

    start: datetime
    end: datetime

    def contains(self, when: datetime) -> bool:
        return self.start <= when < self.end

    def edges(self, day: date) -> list[datetime]:
        return [t for t in (self.start, self.end) if t.astimezone(UTC).date() in (day, day + timedelta(days=1))]

    def describe(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} {self.start.tzname() or ''}".strip()


@dataclass(frozen=True)
class Freeze:
    when: Weekly | Span
    reason: str = ""


@dataclass(frozen=True)
class Schedule:
    """A site's windows (any one opens it; none: always open) and freezes (any one shuts it)."""

    windows: tuple[Weekly, ...] = ()
    freezes: tuple[Freeze, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.windows and not self.freezes


@dataclass(frozen=True)
class Shut:
    """Why releases may not start or advance now, and when that ends (None: not within the horizon)."""

    why: str
    until: datetime | None


def _shut_now(schedule: Schedule, when: datetime) -> str | None:
    for freeze in schedule.freezes:
        if freeze.when.contains(when):
            what = freeze.reason or "a freeze"
            return f"{what} ({freeze.when.describe()})"
    if schedule.windows and not any(w.contains(when) for w in schedule.windows):
        return "outside the deployment windows (" + "; ".join(w.describe() for w in schedule.windows) + ")"
    return None


def shut(schedule: Schedule, now: datetime) -> Shut | None:
    """None when releases may start and advance at ``now``; else why not and until when."""
    if schedule.empty:
        return None
    why = _shut_now(schedule, now)
    if why is None:
        return None
    rules: list[Weekly | Span] = [*schedule.windows, *(f.when for f in schedule.freezes)]
    start = now.astimezone(UTC).date() - timedelta(days=1)
    for offset in range(HORIZON_DAYS):
        day = start + timedelta(days=offset)
        candidates = sorted({t for rule in rules for t in rule.edges(day) if t > now})
        for candidate in candidates:
            if _shut_now(schedule, candidate) is None:
                return Shut(why, candidate.astimezone(UTC))
    return Shut(why, None)


def parse_schedule(windows: Sequence[dict], freezes: Sequence[dict], default_tz: str = "UTC") -> Schedule:
    """From the policy file: ``windows: [{days, from, to, timeZone}]``, ``freezes: [{days, from, to,
    timeZone, reason}]`` (weekly) or ``[{from: "2026-12-20T00:00", to: "...", timeZone, reason}]``
    (once; local date-times). Raises WindowError."""

    def weekly(doc: dict) -> Weekly:
        tz = str(doc.get("timeZone") or default_tz)
        zone(tz)
        start, end = parse_time(str(doc["from"])), parse_time(str(doc["to"]))
        if end != time(0) and end <= start:
            raise WindowError(
                f"{doc['from']}-{doc['to']} ends before it starts: write one that crosses midnight as two "
                "(…-00:00 and 00:00-…)"
            )
        return Weekly(parse_days(str(doc["days"])), start, end, tz)

    def once(doc: dict) -> Span:
        tz = zone(str(doc.get("timeZone") or default_tz))
        try:
            begin = datetime.fromisoformat(str(doc["from"]))
            end = datetime.fromisoformat(str(doc["to"]))
        except ValueError:
            raise WindowError(
                f"{doc.get('from')!r}/{doc.get('to')!r}: a freeze's from and to are dates or date-times"
            ) from None
        begin = begin if begin.tzinfo else begin.replace(tzinfo=tz)
        end = end if end.tzinfo else end.replace(tzinfo=tz)
        if end <= begin:
            raise WindowError(f"the freeze from {doc['from']} ends before it starts")
        return Span(begin, end)

    parsed_windows = tuple(weekly(w) for w in windows)
    parsed_freezes = tuple(Freeze(weekly(f) if "days" in f else once(f), str(f.get("reason") or "")) for f in freezes)
    return Schedule(parsed_windows, parsed_freezes)


def schedule_to_record(schedule: Schedule) -> dict[str, Any] | None:
    if schedule.empty:
        return None

    def rule(when: Weekly | Span) -> dict[str, Any]:
        if isinstance(when, Weekly):
            days = ",".join(DAYS[d].capitalize() for d in sorted(when.days))
            return {"days": days, "from": f"{when.start:%H:%M}", "to": f"{when.end:%H:%M}", "timeZone": when.tz}
        return {"from": when.start.isoformat(), "to": when.end.isoformat()}

    return {
        "windows": [rule(w) for w in schedule.windows],
        "freezes": [{**rule(f.when), "reason": f.reason} for f in schedule.freezes],
    }


def schedule_from_record(record: dict[str, Any] | None) -> Schedule:
    if not record:
        return Schedule()
    return parse_schedule(record.get("windows") or [], record.get("freezes") or [])
