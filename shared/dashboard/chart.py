"""The release's timeline as an SVG chart, computed here and drawn by the template: the new
version's share of traffic, and both versions' error rate and latency, one point per measurement
kept (oldest first). Pure: plain numbers in, plain geometry out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

WIDTH = 640
PANEL_HEIGHT = 110
LEFT, RIGHT, TOP, GAP = 56, 12, 14, 34


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str  # the point's tooltip: when, and the value


@dataclass(frozen=True)
class Series:
    name: str  # css class: share, canary, stable
    title: str
    points: tuple[Point, ...]

    @property
    def path(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    top: float
    height: float
    ticks: tuple[tuple[float, str], ...]  # (y, label)
    series: tuple[Series, ...]
    limit: tuple[float, str] | None = None  # (y, label) of the limit line


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    panels: tuple[Panel, ...]
    start: str
    end: str
    marks: tuple[tuple[float, str], ...] = field(default=())  # (x, label): a rollback, a promotion
    measurements: int = 0


def share_of(record: Mapping[str, Any]) -> float:
    """The new version's share of production traffic when a measurement was taken: the routing
    rule's weight, or all of it once production runs the new version (the guard window)."""
    return 100.0 if record.get("phase") == "guarding" else float(record.get("weight") or 0.0)


def _at(record: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(record["at"]))


def _nice_top(value: float) -> float:
    for top in (0.5, 1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000):
        if value <= top:
            return float(top)
    return float(value)


def _pct(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") + "%"


def timeline(records: Sequence[Mapping[str, Any]], marks: Sequence[tuple[datetime, str]] = ()) -> Timeline | None:
    """The chart of ``records`` (measurement records, oldest first); None without any."""
    if not records:
        return None
    times = [_at(r) for r in records]
    start, end = min(times), max(times)
    for when, _ in marks:
        end = max(end, when)
    span = max((end - start).total_seconds(), 1.0)
    plot_width = WIDTH - LEFT - RIGHT

    def x_of(when: datetime) -> float:
        return LEFT + plot_width * (when - start).total_seconds() / span

    def numbers(r: Mapping[str, Any]) -> Mapping[str, Any]:
        value = r.get("numbers")
        return value if isinstance(value, Mapping) else {}

    panels: list[Panel] = []
    top = float(TOP)

    def panel(
        title: str, unit: str, columns: Sequence[tuple[str, str, Any]], ceiling: float, limit: float | None, fmt: Any
    ) -> None:
        nonlocal top
        values = [v for _, _, get in columns for r in records if (v := get(r)) is not None]
        high = _nice_top(max([ceiling, *(float(v) for v in values)]) or 1.0)

        def y_of(value: float) -> float:
            return top + PANEL_HEIGHT * (1 - value / high)

        series = []
        for name, label, get in columns:
            points = tuple(
                Point(x_of(when), y_of(float(value)), f"{when:%H:%M:%S}Z {label}: {fmt(float(value))}")
                for when, r in zip(times, records, strict=True)
                if (value := get(r)) is not None
            )
            series.append(Series(name, label, points))
        ticks = tuple((y_of(v), fmt(v)) for v in (0.0, high / 2, high))
        line = (y_of(limit), f"limit {fmt(limit)}") if limit is not None and limit <= high else None
        panels.append(Panel(title, unit, top, PANEL_HEIGHT, ticks, tuple(series), line))
        top += PANEL_HEIGHT + GAP

    def rate(side: str) -> Any:
        return lambda r: None if (v := numbers(r).get(f"{side}ErrorRate")) is None else 100.0 * float(v)

    def latency(side: str) -> Any:
        return lambda r: numbers(r).get(f"{side}LatencyMs")

    last = numbers(records[-1])
    max_rate = last.get("maxErrorRate")
    max_latency = last.get("maxLatencyMs")
    panel("New version's share of traffic", "%", [("share", "new version", share_of)], 100.0, None, _pct)
    panel(
        "Error rate",
        "%",
        [("canary", "new version", rate("canary")), ("stable", "stable version", rate("stable"))],
        1.5 * 100 * float(max_rate or 0),
        100 * float(max_rate) if max_rate is not None else None,
        _pct,
    )
    panel(
        "Latency",
        "ms",
        [("canary", "new version", latency("canary")), ("stable", "stable version", latency("stable"))],
        1.2 * float(max_latency or 0),
        float(max_latency) if max_latency is not None else None,
        lambda v: f"{v:.0f} ms",
    )
    return Timeline(
        width=WIDTH,
        height=int(top - GAP + 24),
        panels=tuple(panels),
        start=f"{start:%H:%M:%S}Z",
        end=f"{end:%H:%M:%S}Z",
        marks=tuple((x_of(when), label) for when, label in marks),
        measurements=len(records),
    )
