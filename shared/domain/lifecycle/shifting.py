"""Shifting: the canary's steps. Each step's weight is applied once the step is saved (write-ahead),
verified, then baked under analysis; the step completes in exactly one place."""

from __future__ import annotations

from datetime import timedelta

from shared.domain.analysis import Verdict
from shared.domain.durations import format_duration
from shared.domain.lifecycle.desired import converge_weight, desired_weight, slot_still_runs_it
from shared.domain.lifecycle.draft import Draft, pct
from shared.domain.lifecycle.gates import await_approval, gate_passed
from shared.domain.lifecycle.holding import held
from shared.domain.lifecycle.judging import analyze, bake_done, evidence_numbers
from shared.domain.lifecycle.promotion import start_promotion
from shared.domain.model import (
    CONTROLLER,
    AnalysisProgress,
    Gate,
    Observation,
    Phase,
    Promotion,
    WebhookStage,
)


def start_step(d: Draft, index: int, *, actor: str = CONTROLLER, why: str = "") -> None:
    steps = d.release.steps
    step = steps[index]
    d.transition(
        Phase.SHIFTING,
        "step.started",
        f"step {index + 1}/{len(steps)}: routing {pct(step.weight)} of production traffic to {d.label}{why}",
        actor=actor,
        step=index,
        weight=step.weight,
        step_started_at=None,
        gate=None,
        gate_pending=None,
        gates_passed=tuple(g for g in d.release.gates_passed if g is not WebhookStage.EACH_STEP),
        analysis=AnalysisProgress(),
        reached_users=True,
    )


def shifting(d: Draft, obs: Observation) -> None:
    r, slots = d.release, obs.slots
    if slots is None or not slot_still_runs_it(d, slots.staging_release):
        return
    if r.paused and slots.weight < desired_weight(r):
        return  # paused before the step's weight was applied: do not raise it now
    verified = r.step_started_at is not None
    if not converge_weight(d, slots.weight, drift="re-applying" if verified else None):
        return
    steps = r.steps
    step = steps[r.step]
    if not verified:
        d.update(step_started_at=d.now)
        d.record(
            "step.verified",
            f"step {r.step + 1}/{len(steps)}: {pct(step.weight)} of traffic reaches {d.label} (verified); "
            f"baking {format_duration(step.bake_seconds)} under analysis",
        )
        return
    assert r.step_started_at is not None
    verdict = analyze(d, obs)
    if d.release.phase is not Phase.SHIFTING or d.release.paused:
        return
    bake_end = r.step_started_at + timedelta(seconds=step.bake_seconds)
    if d.now < bake_end:
        return
    if bake_done(d, f"step {r.step + 1}/{len(steps)}", step.bake_seconds):
        if not gate_passed(d, obs, WebhookStage.EACH_STEP):
            return
        after = f"step {r.step + 2}" if r.step + 1 < len(steps) else "the swap"
        if held(d, obs, after):
            return
        complete_step(d, verdict)


def complete_step(d: Draft, verdict: Verdict | None, *, actor: str = CONTROLLER, why: str = "") -> None:
    r = d.release
    steps = r.steps
    step = steps[r.step]
    summary = f"; {verdict.summary()}" if verdict is not None else ""
    d.record(
        "step.completed",
        f"step {r.step + 1}/{len(steps)} completed ({pct(step.weight)}){why}{summary}",
        actor=actor,
        evidence=[evidence_numbers(e) for e in r.analysis.evidence],
    )
    if r.step + 1 < len(steps):
        start_step(d, r.step + 1, actor=actor)
    elif r.spec.promotion is Promotion.MANUAL and actor == CONTROLLER:
        await_approval(d, Gate.BEFORE_PROMOTION)
    else:
        start_promotion(d, f"all {len(steps)} steps completed", actor=actor)
