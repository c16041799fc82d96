"""decide(): the one entry of the lifecycle, and what the service must observe before calling it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from shared.domain.lifecycle.admission import pending
from shared.domain.lifecycle.delivery import deploying, validating
from shared.domain.lifecycle.draft import Draft
from shared.domain.lifecycle.gates import awaiting_approval
from shared.domain.lifecycle.promotion import guarding, promoting
from shared.domain.lifecycle.rollback import failed, rolling_back
from shared.domain.lifecycle.schedule import schedule
from shared.domain.lifecycle.shifting import shifting
from shared.domain.model import BeginSwap, Decision, Observation, Phase, Release, SiteState, WebhookStage

MAX_CHAIN = 12

HANDLERS: dict[Phase, Callable[[Draft, Observation], None]] = {
    Phase.PENDING: pending,
    Phase.DEPLOYING: deploying,
    Phase.VALIDATING: validating,
    Phase.AWAITING_APPROVAL: awaiting_approval,
    Phase.SHIFTING: shifting,
    Phase.PROMOTING: promoting,
    Phase.GUARDING: guarding,
    Phase.ROLLING_BACK: rolling_back,
}


@dataclass(frozen=True)
class Needs:
    """What the service must observe before calling decide()."""

    slots: bool = False
    readiness: bool = False
    checks: bool = False
    analysis: bool = False
    window_start: datetime | None = None
    gate: WebhookStage | None = None


def needs(release: Release, site: SiteState) -> Needs:
    phase = release.phase
    if phase is Phase.FAILED:
        return Needs(slots=release.holds_site)
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
        checks=phase is Phase.VALIDATING
        and not release.paused
        and release.gate_pending is None
        and not (release.held and release.validation.streak >= release.spec.validation.consecutive_successes),
        analysis=analysis,
        window_start=window_start if analysis else None,
        gate=release.gate_pending,
    )


def decide(release: Release, observation: Observation, now: datetime) -> Decision:
    """The next state of ``release`` given what was observed, with effects and audit entries.

    Pure and level-triggered: each phase's handler compares the observation with the phase's
    desired state (``desired.DESIRED``) and asks for what is missing; phases chain within one call
    until one has to wait, or has to be saved before going on (``Decision.again``).
    """
    d = Draft(release, now)
    if release.phase is Phase.FAILED:
        failed(d, observation)
    for _ in range(MAX_CHAIN):
        phase, step = d.release.phase, d.release.step
        if phase.is_final or d.again:
            break
        HANDLERS[phase](d, observation)
        if (d.release.phase, d.release.step) == (phase, step):
            break
    claims_swap = any(isinstance(e, BeginSwap) for e in d.effects)
    if (d.release.transient_failures or d.release.failing_since) and not claims_swap:
        d.update(transient_failures=0, failing_since=None)  # the platform answered (a swap's start tells)
    schedule(d)
    return d.finish()
