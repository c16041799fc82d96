"""One decision being made: the evolving release, its effects, its audit entries and alerts."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from shared.domain.model import (
    CONTROLLER,
    TRANSITIONS,
    Alert,
    AuditEntry,
    Decision,
    Effect,
    Phase,
    Release,
    SetWeight,
)

WEIGHT_TOLERANCE = 0.01


class IllegalTransition(AssertionError):
    """A phase change the lifecycle does not allow: a bug, never user input."""


class OverrideRefused(Exception):
    """The override is not allowed in the release's current state; ``reason`` says why."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def weight_is(observed: float, desired: float) -> bool:
    return abs(observed - desired) <= WEIGHT_TOLERANCE


def pct(weight: float) -> str:
    return f"{weight:g}%"


class Draft:
    """Accumulates one decision. ``stored`` is the release as it was loaded: what is saved, and so
    what a crash or a lost save falls back to."""

    def __init__(self, release: Release, now: datetime):
        self.stored = release
        self.release = release
        self.now = now
        self.effects: list[Effect] = []
        self.audit: list[AuditEntry] = []
        self.again = False
        self.measurements: list[dict[str, Any]] = []

    @property
    def label(self) -> str:
        return f"version {self.release.spec.version}"

    def update(self, **changes: Any) -> None:
        self.release = replace(self.release, **changes)

    def record(self, action: str, message: str, *, actor: str = CONTROLLER, **details: Any) -> None:
        phase = self.release.phase
        self.audit.append(AuditEntry(self.now, actor, action, message, phase, phase, self.release.weight, details))

    def transition(
        self,
        to: Phase,
        action: str,
        message: str,
        *,
        actor: str = CONTROLLER,
        details: dict[str, Any] | None = None,
        **changes: Any,
    ) -> None:
        current = self.release.phase
        if to not in TRANSITIONS[current]:
            raise IllegalTransition(f"{current} -> {to} is not a lifecycle transition")
        if to is not current:
            changes.setdefault("phase_since", self.now)
            changes.setdefault("failing_since", None)
        if to.is_final:
            changes.update(finished_at=self.now, next_check_at=None, paused=False, inconclusive=False)
        self.update(phase=to, **changes)
        self.audit.append(AuditEntry(self.now, actor, action, message, current, to, self.release.weight, details or {}))

    def emit(self, effect: Effect) -> None:
        if isinstance(effect, SetWeight):
            self.effects = [e for e in self.effects if not isinstance(e, SetWeight)]
        self.effects.append(effect)

    def alert(self, severity: str, message: str, *, event: str = "warning", **details: Any) -> None:
        """Recorded with the state; the service delivers it after the save and keeps it until sent."""
        seq = self.release.alerts_raised + 1
        level = severity if severity in ("info", "error") else "warning"
        entry = Alert(seq, level, message, self.now, event=event, details=details)  # type: ignore[arg-type]
        self.update(outbox=(*self.release.outbox, entry), alerts_raised=seq)

    def save_first(self) -> None:
        """Stop here: the next action needs this decision saved first; decide again right after."""
        self.again = True

    def rollback(self, reason: str, *, actor: str = CONTROLLER, **details: Any) -> None:
        self.transition(
            Phase.ROLLING_BACK,
            "rollback.started",
            f"rolling back {self.label}: {reason}",
            actor=actor,
            details=details,
            reason=reason,
            paused=False,
            inconclusive=False,
            gate=None,
            gate_pending=None,
        )

    def fail(self, reason: str) -> None:
        """A known-good state could not be restored: a person must act. The site stays held."""
        self.transition(Phase.FAILED, "failed", f"FAILED: {reason}", reason=reason, holds_site=True)
        self.alert("error", f"release {self.release.id} failed: {reason}", event="failed", reason=reason)

    def stalled(self, seconds: int) -> bool:
        since = self.release.phase_since or self.release.created_at
        return self.now - since >= timedelta(seconds=seconds)

    def finish(self) -> Decision:
        release = replace(self.release, updated_at=self.now)
        return Decision(
            release, tuple(self.effects), tuple(self.audit), again=self.again, measurements=tuple(self.measurements)
        )

    def measured(self, record: dict[str, Any]) -> int:
        """Keep one measurement as evidence; returns the sequence number the store will give it."""
        self.measurements.append(record)
        counts = dict(self.release.verdicts)
        counts[record["verdict"]] = counts.get(record["verdict"], 0) + 1
        self.update(verdicts=tuple(sorted(counts.items())))
        return self.stored.measured_seq + len(self.measurements)
