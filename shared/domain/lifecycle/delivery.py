"""Deploy and validation: the new version goes onto the slot and is checked there, before any user
traffic. No routing rule may send users to the slot in these phases: one found there (left by an
earlier release, or set by hand) is removed before anything else happens."""

from __future__ import annotations

from dataclasses import replace

from shared.domain.durations import format_duration
from shared.domain.lifecycle.desired import converge_weight, slot_still_runs_it
from shared.domain.lifecycle.draft import Draft
from shared.domain.lifecycle.gates import await_approval, gate_passed
from shared.domain.lifecycle.holding import held
from shared.domain.lifecycle.promotion import start_promotion
from shared.domain.lifecycle.shifting import start_step
from shared.domain.model import (
    DeployToSlot,
    Gate,
    Observation,
    Phase,
    Promotion,
    Release,
    ValidationProgress,
    Warmup,
    WebhookStage,
)

MAX_DEPLOY_ATTEMPTS = 3


def warmup_of(release: Release) -> Warmup | None:
    """The swap's warm-up asks the release's first smoke check, so a slot that fails it is never
    switched into production (the platform keeps a warm-up path the site sets itself)."""
    checks = release.spec.validation.checks
    return Warmup(checks[0].path, (checks[0].expect_status,)) if checks else None


NO_TRAFFIC_YET = "no user may reach a release before it is validated and approved; removing the rule"


def deploying(d: Draft, obs: Observation) -> None:
    r, slots = d.release, obs.slots
    if slots is None:
        return
    converge_weight(d, slots.weight, drift=NO_TRAFFIC_YET)
    slot = r.spec.target.slot
    if slots.staging_release == r.id and slots.staging_ready:
        d.transition(
            Phase.VALIDATING,
            "deploy.completed",
            f"slot {slot} runs release {r.id} and answers on {slots.staging_host or 'its host name'}",
            validation=ValidationProgress(),
        )
        return
    deadline = r.spec.analysis.progress_deadline_seconds
    if d.stalled(deadline):
        d.rollback(f"slot {slot} did not run and answer with release {r.id} within {format_duration(deadline)}")
        return
    if slots.staging_release == r.id or r.paused:
        return  # deployed, warming up (or paused: hold)
    if r.deploy_attempts >= MAX_DEPLOY_ATTEMPTS:
        d.rollback(
            f"the deployment did not take effect on slot {slot} after {r.deploy_attempts} attempts "
            f"(the slot reports release {slots.staging_release or 'none'})"
        )
        return
    d.update(deploy_attempts=r.deploy_attempts + 1)
    d.emit(DeployToSlot(r.id, r.spec.version, r.spec.artifact, dict(r.spec.app_settings), warmup_of(r)))
    d.record(
        "deploy.requested",
        f"deploying {d.label} ({r.spec.artifact.kind} {r.spec.artifact.ref}) to slot {slot} "
        f"(attempt {r.deploy_attempts + 1} of {MAX_DEPLOY_ATTEMPTS})",
    )


def validating(d: Draft, obs: Observation) -> None:
    r = d.release
    v = r.spec.validation
    if obs.slots is not None:
        converge_weight(d, obs.slots.weight, drift=NO_TRAFFIC_YET)
        if not slot_still_runs_it(d, obs.slots.staging_release):
            return
    if r.paused:
        return
    if r.gate_pending is not None:
        if gate_passed(d, obs, r.gate_pending):
            after_validation(d, obs)
        return
    progress = r.validation
    if r.held is not None and progress.streak >= v.consecutive_successes:
        after_validation(d, obs)  # validated, held by the schedule: wait, neither re-checking nor timing out
        return
    if obs.checks is not None:
        failed = [c for c in obs.checks if not c.passed]
        evidence = [c.describe() for c in obs.checks]
        rounds = progress.rounds + 1
        if not failed:
            streak = progress.streak + 1
            d.update(validation=replace(progress, rounds=rounds, streak=streak))
            d.record(
                "validation.passed",
                f"validation round {rounds}: all {len(obs.checks)} check(s) passed "
                f"({streak} of {v.consecutive_successes} in a row)",
                checks=evidence,
            )
            if streak >= v.consecutive_successes:
                after_validation(d, obs)
                return
        else:
            failures = progress.failures + 1
            d.update(validation=replace(progress, rounds=rounds, streak=0, failures=failures))
            first = failed[0].describe()
            if failures >= v.failure_limit:
                d.rollback(f"validation failed {failures} time(s): {first}", checks=evidence)
                return
            d.record(
                "validation.failed",
                f"validation round {rounds} failed ({failures} of {v.failure_limit} allowed): {first}",
                checks=evidence,
            )
    if d.stalled(v.deadline_seconds):
        d.rollback(
            f"validation did not pass {v.consecutive_successes} round(s) in a row within "
            f"{format_duration(v.deadline_seconds)}"
        )


def after_validation(d: Draft, obs: Observation) -> None:
    spec = d.release.spec
    if not gate_passed(d, obs, WebhookStage.BEFORE_TRAFFIC):
        return
    if spec.is_canary:
        if spec.approve_before_traffic:
            await_approval(d, Gate.BEFORE_TRAFFIC)
        elif not held(d, obs, "its first step"):
            start_step(d, 0)
    elif spec.promotion is Promotion.MANUAL:
        await_approval(d, Gate.BEFORE_PROMOTION)
    elif not held(d, obs, "the swap"):
        start_promotion(d, "validation passed")
