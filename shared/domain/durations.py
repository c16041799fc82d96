"""Durations as the event contract writes them: ``"90s"``, ``"5m"``, ``"1h30m"`` or integer seconds."""

from __future__ import annotations

import re

DURATION_PATTERN = r"^(?=\d)(?:\d+h)?(?:\d+m)?(?:\d+s)?$"
_DURATION = re.compile(r"^(?=\d)(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: int | str) -> int:
    """Seconds in ``value``; raises ValueError when it is not a duration."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("a duration is a number of seconds or a string like '90s', '5m', '1h30m'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return value
    match = _DURATION.match(value)
    if not match:
        raise ValueError("a duration is a number of seconds or a string like '90s', '5m', '1h30m'")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def format_duration(seconds: float) -> str:
    """The shortest readable form: 0s, 45s, 5m, 1h30m, 2m30s."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"
