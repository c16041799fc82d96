"""Validation checks and analysis evidence as a test scripts them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from shared.domain.model import (
    Check,
    CheckResult,
    GateResult,
    Measurement,
    ProviderKind,
    ProviderSpec,
    Release,
    SlotObservation,
    VersionStats,
    WebhookStage,
)


class ScriptedValidator:
    """Answers every check with ``passed`` (and ``status``) until told otherwise."""

    def __init__(self, passed: bool = True, status: int = 200):
        self.passed = passed
        self.status = status
        self.rounds = 0

    def run_checks(self, host: str, checks: tuple[Check, ...]) -> tuple[CheckResult, ...]:
        self.rounds += 1
        status = self.status if self.passed else (self.status if self.status != 200 else 503)
        return tuple(CheckResult(c, self.passed, status=status, latency_ms=5.0) for c in checks)


class ScriptedAnalyzer:
    """Returns the measurement ``script`` makes for each call (default: a healthy canary)."""

    def __init__(self, script: Callable[[Release, datetime], tuple[Measurement, ...]] | None = None):
        self.script = script or healthy
        self.calls = 0
        self.gate_answer = True
        self.gates_asked: list[WebhookStage] = []

    def measure(
        self,
        release: Release,
        slots: SlotObservation,
        providers: tuple[ProviderSpec, ...],
        window_start: datetime,
        now: datetime,
    ) -> tuple[Measurement, ...]:
        self.calls += 1
        return self.script(release, now)

    def ask_gates(self, release: Release, slots: SlotObservation, stage: WebhookStage) -> tuple[GateResult, ...]:
        self.gates_asked.append(stage)
        detail = "scripted yes" if self.gate_answer else "scripted no"
        return (GateResult(ProviderKind.WEBHOOK, self.gate_answer, detail, stage),)


def healthy(release: Release, now: datetime) -> tuple[Measurement, ...]:
    requests = max(release.spec.analysis.min_requests, 100)
    return (
        Measurement(
            ProviderKind.HTTP,
            canary=VersionStats(requests=requests, errors=0, latency_ms=20.0),
            stable=VersionStats(requests=requests, errors=0, latency_ms=20.0),
        ),
    )
