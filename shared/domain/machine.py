"""The release state machine.

``decide(release, observation, now)`` looks at what the platform reports and says what to do next:
a new release value, the effects to apply, and the audit entries explaining why. It is pure and
level-triggered: given the same observation it asks for the same desired state, so repeating a
tick after a crash is harmless. Each phase's logic lives in one handler below.

Overrides (pause, resume, promote, promote-full, rollback, approve, retry) only change intent; the
next ``decide()`` reconciles the slots with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from shared.domain.analysis import Verdict, accumulate, combine, judge
from shared.domain.durations import format_duration
from shared.domain.model import (
    CONTROLLER,
    TRANSITIONS,
    AnalysisProgress,
    AuditEntry,
    BeginSwap,
    Decision,
    DeployToSlot,
    Effect,
    Gate,
    LastGood,
    Observation,
    Override,
    OverrideKind,
    Phase,
    Promotion,
    ProviderKind,
    RaiseAlert,
    Release,
    ReleaseSpec,
    RestoreStaging,
    SetWeight,
    SiteState,
    SwapProgress,
    SwapStatus,
    ValidationProgress,
    WebhookStage,
)

MAX_DEPLOY_ATTEMPTS = 3
MAX_CHAIN = 12
WEIGHT_TOLERANCE = 0.01
MAX_BACKOFF_SECONDS = 300


class IllegalTransition(AssertionError):
    """decide() tried a phase change the lifecycle does not allow: a bug, never user input."""


class OverrideRefused(Exception):
    """The override is not allowed in the release's current state; ``reason`` says why."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Needs:
    """What the service must observe before calling decide()."""

    slots: bool = False
    readiness: bool = False
    checks: bool = False
    analysis: bool = False
    window_start: datetime | None = None
    gate: WebhookStage | None = None


@dataclass(frozen=True)
class Admission:
    """A new release's arrival: the site's new state and every release row that changes."""

    site: SiteState
    decisions: tuple[Decision, ...]


def _weight_is(observed: float, desired: float) -> bool:
    return abs(observed - desired) <= WEIGHT_TOLERANCE


def _pct(weight: float) -> str:
    return f"{weight:g}%"


class _Draft:
    """Accumulates one decision: the evolving release, its effects and its audit entries."""

    def __init__(self, release: Release, now: datetime):
        self.release = release
        self.now = now
        # The phase as stored before this decision. A swap is the one action that is not idempotent:
        # it is only started from a phase that was saved first, so a crash right after starting it
        # leaves a state that knows a swap may be under way.
        self.stored_phase = release.phase
        self.effects: list[Effect] = []
        self.audit: list[AuditEntry] = []

    @property
    def label(self) -> str:
        r = self.release
        return f"version {r.spec.version}"

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
        if to.is_final:
            changes.update(finished_at=self.now, next_check_at=None, paused=False, inconclusive=False)
        self.update(phase=to, **changes)
        self.audit.append(AuditEntry(self.now, actor, action, message, current, to, self.release.weight, details or {}))

    def emit(self, effect: Effect) -> None:
        if isinstance(effect, SetWeight):
            self.effects = [e for e in self.effects if not isinstance(e, SetWeight)]
        self.effects.append(effect)

    def set_weight(self, weight: float) -> None:
        self.update(weight=weight)
        self.emit(SetWeight(weight))

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
        self.transition(Phase.FAILED, "failed", f"FAILED: {reason}", reason=reason)
        self.emit(RaiseAlert("error", f"release {self.release.id} failed: {reason}"))

    def stalled(self, seconds: int) -> bool:
        since = self.release.phase_since or self.release.created_at
        return self.now - since >= timedelta(seconds=seconds)

    def finish(self) -> Decision:
        release = replace(self.release, updated_at=self.now)
        return Decision(release, tuple(self.effects), tuple(self.audit))


# ---------------------------------------------------------------------------------------------
# What to observe
# ---------------------------------------------------------------------------------------------


def needs(release: Release, site: SiteState) -> Needs:
    phase = release.phase
    if phase.is_final or (phase is Phase.PENDING and site.active != release.id):
        return Needs()
    analysis = (phase is Phase.SHIFTING and release.step_started_at is not None) or (
        phase is Phase.AWAITING_APPROVAL and release.weight > 0 and release.step_started_at is not None
    )
    window_start = release.step_started_at
    if phase is Phase.GUARDING:
        analysis, window_start = True, release.phase_since
    return Needs(
        slots=True,
        readiness=phase is Phase.DEPLOYING,
        checks=phase is Phase.VALIDATING and not release.paused and release.gate_pending is None,
        analysis=analysis,
        window_start=window_start if analysis else None,
        gate=release.gate_pending,
    )


# ---------------------------------------------------------------------------------------------
# decide()
# ---------------------------------------------------------------------------------------------


def decide(release: Release, observation: Observation, now: datetime) -> Decision:
    """The next state of ``release`` given what was observed, with effects and audit entries."""
    d = _Draft(release, now)
    for _ in range(MAX_CHAIN):
        phase, step = d.release.phase, d.release.step
        if phase.is_final:
            break
        _HANDLERS[phase](d, observation)
        if (d.release.phase, d.release.step) == (phase, step):
            break
    if d.release.transient_failures and not d.release.is_final:
        d.update(transient_failures=0)
    _schedule(d)
    return d.finish()


def _schedule(d: _Draft) -> None:
    r = d.release
    if r.is_final:
        d.update(next_check_at=None)
    elif r.phase is Phase.AWAITING_APPROVAL and r.weight == 0:
        d.update(next_check_at=None)  # only an approval or an override wakes it
    else:
        d.update(next_check_at=d.now)


def _pending(d: _Draft, obs: Observation) -> None:
    r = d.release
    if obs.site.active != r.id or r.paused:
        return
    d.transition(
        Phase.DEPLOYING,
        "deploy.started",
        f"site {r.spec.target.site} is free; deploying {d.label} to slot {r.spec.target.slot}",
    )


def _deploying(d: _Draft, obs: Observation) -> None:
    r, slots = d.release, obs.slots
    if slots is None:
        return
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
    d.emit(DeployToSlot(r.id, r.spec.version, r.spec.artifact, dict(r.spec.app_settings)))
    d.record(
        "deploy.requested",
        f"deploying {d.label} ({r.spec.artifact.kind} {r.spec.artifact.ref}) to slot {slot} "
        f"(attempt {r.deploy_attempts + 1} of {MAX_DEPLOY_ATTEMPTS})",
    )


def _validating(d: _Draft, obs: Observation) -> None:
    r = d.release
    v = r.spec.validation
    if r.paused:
        return
    if r.gate_pending is not None:
        if _gate_passed(d, obs, r.gate_pending):
            _after_validation(d, obs)
        return
    progress = r.validation
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
                _after_validation(d, obs)
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


def _after_validation(d: _Draft, obs: Observation) -> None:
    spec = d.release.spec
    if not _gate_passed(d, obs, WebhookStage.BEFORE_TRAFFIC):
        return
    if spec.is_canary:
        if spec.approve_before_traffic:
            _await_approval(d, Gate.BEFORE_TRAFFIC)
        else:
            _start_step(d, 0)
    elif spec.promotion is Promotion.MANUAL:
        _await_approval(d, Gate.BEFORE_PROMOTION)
    else:
        _start_promotion(d, "validation passed")


def _webhook_stages(spec: ReleaseSpec) -> set[WebhookStage]:
    return {stage for p in spec.analysis.providers if p.kind is ProviderKind.WEBHOOK for stage in p.stages}


def _gate_passed(d: _Draft, obs: Observation, stage: WebhookStage) -> bool:
    """True when no webhook gates this stage or every gate said yes. A gate is asked on the tick
    after it is due (it is I/O); a "no", an error or a timeout rolls back."""
    r = d.release
    if stage not in _webhook_stages(r.spec) or stage in r.gates_passed:
        return True
    if r.gate_pending is not stage:
        d.update(gate_pending=stage)
        d.record("gate.asking", f"asking the webhook gate ({stage}) before going on")
        return False
    if obs.gates is None:
        return False
    refused = [g for g in obs.gates if not g.passed]
    d.update(gate_pending=None)
    if refused:
        d.rollback(f"webhook gate ({stage}) said no: {refused[0].detail}", gates=[g.detail for g in obs.gates])
        return False
    d.update(gates_passed=(*r.gates_passed, stage))
    d.record("gate.passed", f"webhook gate ({stage}) said yes", gates=[g.detail for g in obs.gates])
    return True


def _await_approval(d: _Draft, gate: Gate) -> None:
    what = "before any user traffic" if gate is Gate.BEFORE_TRAFFIC else "before the swap into production"
    d.transition(
        Phase.AWAITING_APPROVAL,
        "approval.waiting",
        f"waiting for a person to approve {d.label} {what} (POST .../approve)",
        gate=gate,
    )


def _start_step(d: _Draft, index: int, *, actor: str = CONTROLLER, why: str = "") -> None:
    steps = d.release.steps
    step = steps[index]
    d.transition(
        Phase.SHIFTING,
        "step.started",
        f"step {index + 1}/{len(steps)}: routing {_pct(step.weight)} of production traffic to {d.label}{why}",
        actor=actor,
        step=index,
        weight=step.weight,
        step_started_at=None,
        gate=None,
        gate_pending=None,
        gates_passed=tuple(g for g in d.release.gates_passed if g is not WebhookStage.EACH_STEP),
        analysis=AnalysisProgress(),
    )


def _start_promotion(d: _Draft, why: str, *, actor: str = CONTROLLER) -> None:
    d.transition(
        Phase.PROMOTING,
        "promotion.started",
        f"promoting {d.label}: {why}",
        actor=actor,
        gate=None,
        gate_pending=None,
        paused=False,
        inconclusive=False,
    )


def _hold_weight(d: _Draft, observed: float) -> bool:
    """Re-apply the desired weight if the platform drifted; True when it is in place."""
    r = d.release
    if _weight_is(observed, r.weight):
        return True
    if r.step_started_at is not None:
        d.record(
            "weight.drift",
            f"observed {_pct(observed)} on {d.label}, expected {_pct(r.weight)}; re-applying",
        )
    d.emit(SetWeight(r.weight))
    return False


def _shifting(d: _Draft, obs: Observation) -> None:
    r, slots = d.release, obs.slots
    if slots is None:
        return
    if not _hold_weight(d, slots.weight):
        return
    steps = r.steps
    step = steps[r.step]
    if r.step_started_at is None:
        d.update(step_started_at=d.now)
        d.record(
            "step.verified",
            f"step {r.step + 1}/{len(steps)}: {_pct(step.weight)} of traffic reaches {d.label} (verified); "
            f"baking {format_duration(step.bake_seconds)} under analysis",
        )
        return
    verdict = _analyze(d, obs)
    if d.release.phase is not Phase.SHIFTING or d.release.paused:
        return
    bake_end = r.step_started_at + timedelta(seconds=step.bake_seconds)
    if d.now < bake_end:
        return
    if _judged_good(d):
        if not _gate_passed(d, obs, WebhookStage.EACH_STEP):
            return
        _complete_step(d, verdict)
    else:
        _extend_or_pause(d, f"step {r.step + 1}/{len(steps)}", step.bake_seconds)


def _judged_good(d: _Draft) -> bool:
    a = d.release.analysis
    return a.last_outcome == "pass" and a.successes >= d.release.spec.analysis.consecutive_successes


def _extend_or_pause(d: _Draft, what: str, planned_seconds: int) -> None:
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
        evidence=[_evidence_numbers(e) for e in a.evidence],
    )
    d.emit(RaiseAlert("warning", f"release {r.id} paused: {reason}"))


def _evidence_numbers(e: Any) -> dict[str, Any]:
    return {
        "provider": e.provider.value,
        "canaryRequests": e.canary.requests,
        "canaryErrors": e.canary.errors,
        "canaryLatencyMs": e.canary.latency_ms,
        "stableRequests": e.stable.requests,
        "stableErrors": e.stable.errors,
        "stableLatencyMs": e.stable.latency_ms,
    }


def _analyze(d: _Draft, obs: Observation, *, compare_to_stable: bool = True) -> Verdict | None:
    """Fold in this tick's evidence; roll back the moment the failure limit is passed."""
    if obs.measurements is None:
        return None
    r = d.release
    settings = r.spec.analysis
    progress = r.analysis
    evidence = accumulate(progress.evidence, obs.measurements)
    verdict = combine([judge(e, settings, compare_to_stable=compare_to_stable) for e in evidence])
    previous = progress.last_outcome
    if verdict.outcome == "fail":
        failures = progress.failures + 1
        d.update(analysis=replace(progress, evidence=evidence, failures=failures, successes=0, last_outcome="fail"))
        if failures > settings.failure_limit:
            d.rollback(f"analysis failed: {verdict.summary()}", analysis=verdict.numbers)
        else:
            d.record(
                "analysis.failed",
                f"analysis failed ({failures} of {settings.failure_limit} tolerated failures used): "
                f"{verdict.summary()}",
                analysis=verdict.numbers,
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


def _complete_step(d: _Draft, verdict: Verdict | None, *, actor: str = CONTROLLER, why: str = "") -> None:
    r = d.release
    steps = r.steps
    step = steps[r.step]
    summary = f"; {verdict.summary()}" if verdict is not None else ""
    d.record(
        "step.completed",
        f"step {r.step + 1}/{len(steps)} completed ({_pct(step.weight)}){why}{summary}",
        actor=actor,
        evidence=[_evidence_numbers(e) for e in r.analysis.evidence],
    )
    if r.step + 1 < len(steps):
        _start_step(d, r.step + 1, actor=actor)
    elif r.spec.promotion is Promotion.MANUAL and actor == CONTROLLER:
        _await_approval(d, Gate.BEFORE_PROMOTION)
    else:
        _start_promotion(d, f"all {len(steps)} steps completed", actor=actor)


def _awaiting_approval(d: _Draft, obs: Observation) -> None:
    r = d.release
    if r.weight > 0 and obs.slots is not None and _hold_weight(d, obs.slots.weight):
        _analyze(d, obs)  # the canary keeps serving while a person decides: keep judging it


def _promoting(d: _Draft, obs: Observation) -> None:
    r, slots = d.release, obs.slots
    if slots is None:
        return
    if slots.production_release == r.id:
        guard = r.spec.strategy.guard_seconds
        if guard > 0:
            d.transition(
                Phase.GUARDING,
                "swap.completed",
                f"production runs {d.label}; watching it for {format_duration(guard)} with the previous "
                f"version warm in slot {r.spec.target.slot}",
                swap=None,
                weight=0.0,
                analysis=AnalysisProgress(),
            )
        else:
            _succeed(d, "swap completed")
        return
    if r.swap is not None:
        state = slots.swap
        if state is not None and state.status is SwapStatus.FAILED:
            d.update(swap=None)
            d.rollback(f"the swap into production failed: {state.message or 'no detail'}")
        elif state is not None and state.status is SwapStatus.SUCCEEDED:
            d.update(swap=None)
            d.rollback(f"the swap reported success but production runs release {slots.production_release or 'unknown'}")
        elif d.stalled(r.spec.analysis.progress_deadline_seconds):
            d.rollback(f"the swap did not complete within {format_duration(r.spec.analysis.progress_deadline_seconds)}")
        return
    if r.paused:
        return
    if d.stalled(r.spec.analysis.progress_deadline_seconds):
        d.rollback(f"the swap could not start within {format_duration(r.spec.analysis.progress_deadline_seconds)}")
        return
    if not _gate_passed(d, obs, WebhookStage.BEFORE_PROMOTION):
        return  # the last word before the swap, whoever promoted
    if not _weight_is(slots.weight, 0) or r.weight != 0:
        d.set_weight(0.0)  # clear the routing rule first: no user is sent to the old version after the swap
        d.record("promotion.routeCleared", f"routing rule cleared (0%) before swapping {d.label} into production")
    if d.stored_phase is not Phase.PROMOTING:
        return  # save "promoting" first; the swap starts on the next tick
    d.update(swap=SwapProgress("promote", d.now))
    d.emit(BeginSwap("promote"))
    d.record("swap.requested", f"swapping slot {r.spec.target.slot} ({d.label}) into production")


def _succeed(d: _Draft, why: str, *, actor: str = CONTROLLER) -> None:
    d.transition(
        Phase.SUCCEEDED,
        "succeeded",
        f"{d.label} is live in production ({why})",
        actor=actor,
        swap=None,
        weight=0.0,
    )


def _guarding(d: _Draft, obs: Observation) -> None:
    r = d.release
    if obs.slots is not None and obs.slots.production_release != r.id:
        d.rollback(
            f"production runs release {obs.slots.production_release or 'unknown'}, not this one "
            "(swapped outside the controller?)"
        )
        return
    _analyze(d, obs, compare_to_stable=False)
    if d.release.phase is not Phase.GUARDING or d.release.paused:
        return
    guard = r.spec.strategy.guard_seconds
    if d.now < (r.phase_since or d.now) + timedelta(seconds=guard):
        return
    if _judged_good(d):
        _succeed(d, f"guard window of {format_duration(guard)} passed")
    else:
        _extend_or_pause(d, "guard window", guard)


def _rolling_back(d: _Draft, obs: Observation) -> None:
    r, slots = d.release, obs.slots
    if slots is None:
        return
    deadline = r.spec.analysis.progress_deadline_seconds
    if r.swap is not None:
        state = slots.swap
        if state is None or state.status is SwapStatus.IN_PROGRESS:
            if d.stalled(deadline):
                d.fail(f"the swap did not finish within {format_duration(deadline)}; check slot swap status")
            return
        d.update(swap=None)
        if state.status is SwapStatus.FAILED and r.swap.purpose == "rollback":
            d.fail(
                f"could not swap the previous version back into production ({state.message or 'no detail'}); "
                f"production may still run {d.label}: swap slot {r.spec.target.slot} with production by hand"
            )
            return
    if slots.production_release == r.id:
        if d.stalled(deadline):
            d.fail(f"production still runs {d.label} after {format_duration(deadline)} of rolling back")
            return
        if d.stored_phase is not Phase.ROLLING_BACK:
            return  # save "rollingBack" first; the swap back starts on the next tick
        d.update(swap=SwapProgress("rollback", d.now))
        d.emit(BeginSwap("rollback"))
        d.record("rollback.swapBack", f"production runs {d.label}; swapping the previous version back")
        return
    if not _weight_is(slots.weight, 0):
        if d.stalled(deadline):
            d.fail(f"could not take {d.label} out of traffic within {format_duration(deadline)}")
            return
        d.set_weight(0.0)
        d.record("rollback.weight", f"routing 0% of traffic to {d.label}")
        return
    if r.weight != 0:
        d.update(weight=0.0)
    last_good = obs.site.last_good
    if last_good is not None and slots.staging_release == r.id and last_good.release_id != r.id:
        d.emit(RestoreStaging(last_good))
    d.transition(
        Phase.ROLLED_BACK,
        "rolledBack",
        f"rolled back {d.label}: {r.reason or 'requested'}; production serves release "
        f"{slots.production_release or 'unknown'}",
    )
    d.emit(RaiseAlert("warning", f"release {r.id} rolled back: {r.reason or 'requested'}"))


_HANDLERS: dict[Phase, Callable[[_Draft, Observation], None]] = {
    Phase.PENDING: _pending,
    Phase.DEPLOYING: _deploying,
    Phase.VALIDATING: _validating,
    Phase.AWAITING_APPROVAL: _awaiting_approval,
    Phase.SHIFTING: _shifting,
    Phase.PROMOTING: _promoting,
    Phase.GUARDING: _guarding,
    Phase.ROLLING_BACK: _rolling_back,
}


# ---------------------------------------------------------------------------------------------
# Effect outcomes and platform failures
# ---------------------------------------------------------------------------------------------


def record_swap_started(decision: Decision, token: str) -> Decision:
    """Keep the swap's continuation token so later ticks can follow the long-running operation."""
    release = decision.release
    if release.swap is None:
        raise IllegalTransition("a swap token arrived for a release that did not ask for a swap")
    return replace(decision, release=replace(release, swap=replace(release.swap, token=token)))


def transient_failure(release: Release, message: str, now: datetime) -> Decision:
    """The platform failed in a way that may pass: keep the state, count, retry later."""
    d = _Draft(release, now)
    attempt = release.transient_failures + 1
    # A rollback never waits: every tick tries again.
    delay = 0 if release.phase is Phase.ROLLING_BACK else min(15 * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
    d.update(transient_failures=attempt, next_check_at=now + timedelta(seconds=delay))
    d.record(
        "transient.failure",
        f"transient failure (attempt {attempt}): {message}; state unchanged, retrying"
        + (f" in {format_duration(delay)}" if delay else " on the next tick"),
        attempt=attempt,
    )
    return d.finish()


def terminal_failure(release: Release, message: str, now: datetime) -> Decision:
    """The platform refused in a way retrying cannot fix: take the rollback path (or fail it)."""
    d = _Draft(release, now)
    if release.is_final:
        return d.finish()
    if release.swap is not None and release.swap.token is None:
        d.update(swap=None)  # the swap was refused: nothing is in progress
    if release.phase is Phase.ROLLING_BACK:
        d.fail(f"rollback could not complete: {message}")
    elif release.phase is Phase.PENDING:
        # Nothing was changed on the site yet; a person must still fix what stopped it.
        d.transition(Phase.CANCELLED, "cancelled", f"cancelled before it started: {message}", reason=message)
        d.emit(RaiseAlert("error", f"release {release.id} could not start: {message}"))
    else:
        d.rollback(message)
    _schedule(d)
    return d.finish()


# ---------------------------------------------------------------------------------------------
# Overrides
# ---------------------------------------------------------------------------------------------


def override_refusal(release: Release, kind: OverrideKind) -> str | None:
    """Why ``kind`` is not allowed now, or None when it is."""
    phase = release.phase
    if kind is OverrideKind.RETRY:
        if phase not in (Phase.FAILED, Phase.ROLLED_BACK):
            return f"only a failed or rolled-back release can be retried; this one is {phase}"
        if release.retried_as:
            return f"already retried as release {release.retried_as}"
        return None
    if phase.is_final:
        hint = " (use retry to try the same plan again)" if phase in (Phase.FAILED, Phase.ROLLED_BACK) else ""
        return f"the release is final ({phase}){hint}"
    if kind is OverrideKind.PAUSE:
        if release.paused:
            return "the release is already paused"
        if phase is Phase.ROLLING_BACK:
            return "a rollback cannot be paused"
    elif kind is OverrideKind.RESUME:
        if not release.paused:
            return "the release is not paused"
    elif kind is OverrideKind.PROMOTE:
        if phase is Phase.AWAITING_APPROVAL:
            return "the release is waiting for approval: use approve"
        if phase not in (Phase.SHIFTING, Phase.GUARDING):
            return f"promote completes a canary step or ends the guard window; the release is {phase}"
    elif kind is OverrideKind.PROMOTE_FULL:
        if phase is Phase.PROMOTING:
            return "the release is already being promoted"
        if phase not in (Phase.SHIFTING, Phase.AWAITING_APPROVAL, Phase.GUARDING):
            return f"promote-full needs a deployed and validated release; this one is {phase}"
    elif kind is OverrideKind.ROLLBACK and phase is Phase.ROLLING_BACK:
        return "the release is already rolling back"
    elif kind is OverrideKind.APPROVE and phase is not Phase.AWAITING_APPROVAL:
        return f"nothing is waiting for approval; the release is {phase}"
    return None


def apply_override(release: Release, override: Override, now: datetime) -> Decision:
    """Record a person's instruction; the next decide() reconciles the slots with it."""
    kind = override.kind
    if kind is OverrideKind.RETRY:
        raise OverrideRefused("retry creates a new release: use plan_retry")
    refusal = override_refusal(release, kind)
    if refusal is not None:
        raise OverrideRefused(refusal)
    d = _Draft(release, now)
    actor, why = override.actor, override.reason
    by = f" by {actor}: {why}"
    phase = release.phase
    if kind is OverrideKind.PAUSE:
        d.update(paused=True, pause_reason=why)
        d.record("override.pause", f"paused{by}", actor=actor)
    elif kind is OverrideKind.RESUME:
        extension = release.analysis
        if release.inconclusive:
            until = now + timedelta(seconds=release.spec.analysis.max_bake_extension_seconds)
            extension = replace(extension, extension_until=until)
        d.update(paused=False, inconclusive=False, pause_reason=None, analysis=extension)
        d.record("override.resume", f"resumed{by}", actor=actor)
    elif kind is OverrideKind.PROMOTE:
        d.update(paused=False, inconclusive=False, pause_reason=None)
        if phase is Phase.SHIFTING:
            _complete_step(d, None, actor=actor, why=f", promoted{by}")
        else:
            _succeed(d, f"guard window ended early{by}", actor=actor)
    elif kind is OverrideKind.PROMOTE_FULL:
        d.update(paused=False, inconclusive=False, pause_reason=None)
        if phase is Phase.GUARDING:
            _succeed(d, f"guard window ended early{by}", actor=actor)
        else:
            _start_promotion(d, f"remaining steps and gates skipped{by}", actor=actor)
    elif kind is OverrideKind.ROLLBACK:
        if phase is Phase.PENDING:
            d.transition(Phase.CANCELLED, "cancelled", f"cancelled before it started{by}", actor=actor, reason=why)
        else:
            d.rollback(f"requested{by}", actor=actor)
    elif kind is OverrideKind.APPROVE:
        if release.gate is Gate.BEFORE_TRAFFIC:
            _start_step(d, 0, actor=actor, why=f" (approved{by})")
        else:
            _start_promotion(d, f"approved{by}", actor=actor)
    if not d.release.is_final:
        d.update(next_check_at=now)
    if d.effects and any(not isinstance(e, RaiseAlert) for e in d.effects):
        raise IllegalTransition("an override asked for a platform action; only decide() may")
    return d.finish()


_RETRY_SUFFIX = re.compile(r"-retry(\d+)$")


def retry_release_id(release_id: str) -> str:
    match = _RETRY_SUFFIX.search(release_id)
    base = release_id[: match.start()] if match else release_id
    attempt = int(match.group(1)) + 1 if match else 1
    suffix = f"-retry{attempt}"
    return base[: 128 - len(suffix)] + suffix


def plan_retry(old: Release, override: Override, now: datetime) -> tuple[Decision, Decision]:
    """A new release with the old one's plan, and the old one marked as retried (it stays final)."""
    refusal = override_refusal(old, OverrideKind.RETRY)
    if refusal is not None:
        raise OverrideRefused(refusal)
    new_id = retry_release_id(old.id)
    spec = replace(old.spec, release_id=new_id, retry_of=old.id)
    created = new_release(spec, now, actor=override.actor, source=f"retry of {old.id}: {override.reason}")
    d = _Draft(old, now)
    d.update(retried_as=new_id)
    d.record(
        "override.retry", f"retried as release {new_id} by {override.actor}: {override.reason}", actor=override.actor
    )
    return created, d.finish()


# ---------------------------------------------------------------------------------------------
# Arrival and departure of releases on a site
# ---------------------------------------------------------------------------------------------


def new_release(spec: ReleaseSpec, now: datetime, *, actor: str, source: str) -> Decision:
    release = Release(spec=spec, created_at=now, phase_since=now, updated_at=now, next_check_at=now)
    t = spec.target
    requested = f", requested by {spec.metadata.requested_by}" if spec.metadata.requested_by else ""
    plan = (
        " then ".join(f"{_pct(s.weight)} for {format_duration(s.bake_seconds)}" for s in spec.strategy.steps)
        if spec.is_canary
        else "blue-green swap"
    )
    entry = AuditEntry(
        now,
        actor,
        "release.created",
        f"release of version {spec.version} to {t.describe()} accepted via {source}{requested}; "
        f"plan: {plan}; promotion {spec.promotion}",
        Phase.PENDING,
        Phase.PENDING,
        0.0,
        {"commit": spec.metadata.commit, "pipelineUrl": spec.metadata.pipeline_url, "retryOf": spec.retry_of},
    )
    return Decision(release, (), (entry,))


def _cancel_superseded(release: Release, by: Release, now: datetime) -> Decision:
    d = _Draft(release, now)
    reason = f"superseded by release {by.id} (version {by.spec.version}) before any user traffic reached it"
    d.transition(Phase.CANCELLED, "superseded", f"cancelled: {reason}", reason=reason, superseded_by=by.id)
    return d.finish()


def admit(
    site: SiteState, created: Decision, active: Release | None, queued: Release | None, now: datetime
) -> Admission:
    """Place a new release on its site: start it, queue it, or let it supersede idle ones.

    A release that has not reached users yet is cancelled in favour of the newer one; a release
    that has is left to finish, and the new one waits (a newer arrival replaces it in the queue).
    """
    new = created.release
    decisions: list[Decision] = []
    audit = list(created.audit)
    if active is None or active.is_final or active.id == new.id:
        site = replace(site, active=new.id)
    elif not active.has_reached_users:
        decisions.append(_cancel_superseded(active, new, now))
        site = replace(site, active=new.id)
    else:
        site = replace(site, queued=new.id)
        audit.append(
            AuditEntry(
                now,
                CONTROLLER,
                "release.queued",
                f"queued: release {active.id} is {active.phase} on this site and has reached users; "
                f"this release starts when it finishes",
                Phase.PENDING,
                Phase.PENDING,
                0.0,
                {"waitingFor": active.id},
            )
        )
    if queued is not None and queued.id != new.id and not queued.is_final:
        decisions.append(_cancel_superseded(queued, new, now))
        if site.queued == queued.id:
            site = replace(site, queued=None)
    first = replace(created, audit=tuple(audit))
    return Admission(site=site, decisions=(first, *decisions))


def site_after(site: SiteState, release: Release) -> SiteState:
    """The site once ``release`` is final: the queue moves up; a success becomes the last good one."""
    if not release.is_final:
        return site
    if site.active == release.id:
        site = replace(site, active=site.queued, queued=None)
    elif site.queued == release.id:
        site = replace(site, queued=None)
    if release.phase is Phase.SUCCEEDED:
        spec = release.spec
        site = replace(site, last_good=LastGood(release.id, spec.version, spec.artifact, dict(spec.app_settings)))
    return site
