"""Folding a tick's measurements into a step's (or the guard window's) verdict.

The rules themselves are in ``shared.domain.analysis``; this module decides what a verdict does to
the release: roll back past the failure limit, extend a bake that lacks evidence, then pause for a
person when it is still inconclusive.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from shared.domain.analysis import Verdict, accumulate, combine, judge
from shared.domain.durations import format_duration
from shared.domain.lifecycle.draft import Draft
from shared.domain.model import Evidence, Observation, Phase


def evidence_numbers(e: Evidence) -> dict[str, Any]:
    return {
        "provider": e.provider.value,
        "canaryRequests": e.canary.requests,
        "canaryErrors": e.canary.errors,
        "canaryLatencyMs": e.canary.latency_ms,
        "stableRequests": e.stable.requests,
        "stableErrors": e.stable.errors,
        "stableLatencyMs": e.stable.latency_ms,
    }


def _record(d: Draft, verdict: Verdict) -> dict[str, Any]:
    """One provider's measurement as evidence: when, over which window, in which step, its numbers
    and limits, the verdict and why."""
    r = d.release
    window_start = r.phase_since if r.phase is Phase.GUARDING else r.step_started_at
    return {
        "at": d.now.isoformat(),
        "phase": r.phase.value,
        "step": r.step + 1 if r.step >= 0 else None,
        "weight": r.weight,
        "windowStart": window_start.isoformat() if window_start else None,
        "numbers": verdict.numbers,
        "verdict": verdict.outcome,
        "why": list(verdict.reasons),
    }


def analyze(d: Draft, obs: Observation, *, compare_to_stable: bool = True) -> Verdict | None:
    """Fold in this tick's evidence; roll back the moment the failure limit is passed."""
    if obs.measurements is None:
        return None
    r = d.release
    settings = r.spec.analysis
    progress = r.analysis
    evidence = accumulate(progress.evidence, obs.measurements)
    verdicts = [judge(e, settings, compare_to_stable=compare_to_stable) for e in evidence]
    verdict = combine(verdicts)
    kept = [d.measured(_record(d, v)) for v in verdicts]
    previous = progress.last_outcome
    if verdict.outcome == "fail":
        failures = progress.failures + 1
        d.update(analysis=replace(progress, evidence=evidence, failures=failures, successes=0, last_outcome="fail"))
        if failures > settings.failure_limit and settings.advisory:
            if failures == settings.failure_limit + 1:  # once per step: the moment it would have acted
                would(
                    d, "roll back", f"analysis failed: {verdict.summary()}", analysis=verdict.numbers, measurements=kept
                )
        elif failures > settings.failure_limit:
            d.rollback(f"analysis failed: {verdict.summary()}", analysis=verdict.numbers, measurements=kept)
        else:
            d.record(
                "analysis.failed",
                f"analysis failed ({failures} of {settings.failure_limit} tolerated failures used): "
                f"{verdict.summary()}",
                analysis=verdict.numbers,
                measurements=kept,
            )
    elif verdict.outcome == "pass":
        d.update(analysis=replace(progress, evidence=evidence, successes=progress.successes + 1, last_outcome="pass"))
        if previous != "pass":
            d.record("analysis.passed", f"analysis passed: {verdict.summary()}", analysis=verdict.numbers)
    else:
        d.update(analysis=replace(progress, evidence=evidence, successes=0, last_outcome="inconclusive"))
        if previous != "inconclusive":
            d.record("analysis.inconclusive", f"analysis holds: {verdict.summary()}", analysis=verdict.numbers)
    return verdict


def judged_good(d: Draft) -> bool:
    a = d.release.analysis
    return a.last_outcome == "pass" and a.successes >= d.release.spec.analysis.consecutive_successes


def would(d: Draft, action: str, why: str, **details: Any) -> None:
    """Advisory analysis: record what the controller would have done, and do nothing."""
    d.record("advisory", f"advisory analysis: would {action} {d.label}: {why}", would=action, **details)
    d.alert("info", f"release {d.release.id} (advisory): would {action}: {why}", event="advisory", would=action)


def bake_done(d: Draft, what: str, planned_seconds: int) -> bool:
    """At the end of a bake: whether the release may go on. Enforced, only on good evidence (else
    it waits longer, then pauses); advisory, always, after recording what would have held it."""
    if judged_good(d):
        return True
    if not d.release.spec.analysis.advisory:
        extend_or_pause(d, what, planned_seconds)
        return False
    outcome = d.release.analysis.last_outcome or "no data"
    if outcome != "fail":  # a failure was recorded when it happened
        would(d, "hold", f"{what}: analysis {outcome} at the end of the bake")
    return True


def extend_or_pause(d: Draft, what: str, planned_seconds: int) -> None:
    """Too little evidence at the end of a bake: wait longer, up to a limit, then ask a person."""
    r = d.release
    a = r.analysis
    if a.last_outcome == "fail":
        return  # failing, within the failure limit: hold
    limit = r.spec.analysis.max_bake_extension_seconds
    if a.extension_until is None and limit > 0:
        until = d.now + timedelta(seconds=limit)
        d.update(analysis=replace(a, extension_until=until))
        d.record(
            "bake.extended",
            f"{what}: not enough evidence after {format_duration(planned_seconds)} "
            f"({a.last_outcome or 'no data'}); waiting up to {format_duration(limit)} more",
        )
        return
    if a.extension_until is not None and d.now < a.extension_until:
        return
    reason = f"{what}: analysis inconclusive: not enough evidence to judge {d.label}"
    d.update(paused=True, inconclusive=True, pause_reason=reason)
    d.record(
        "paused.inconclusive",
        f"{reason}; paused for a person (promote to accept, rollback to abandon, resume to wait longer)",
        evidence=[evidence_numbers(e) for e in a.evidence],
    )
    d.alert("warning", f"release {r.id} paused: {reason}", event="paused", reason=reason)
