"""Promotion and the guard window: the slot is swapped into production, then production is watched
while the previous version stays warm in the slot.

A swap is the one action that is not idempotent: doing it twice undoes it. So it is claimed first:
the decision that wants a swap records the claim, the service saves it (If-Match) and only then
starts the swap, so two reconcilers can never both start it. A claim whose start was never
recorded (the worker died after asking) is resolved by what the slots show: production running the
release means the swap happened; otherwise, once any swap asked for then would have ended, it did
not, and the swap is claimed again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from shared.domain.durations import format_duration
from shared.domain.lifecycle.desired import converge_weight
from shared.domain.lifecycle.draft import Draft
from shared.domain.lifecycle.gates import gate_passed
from shared.domain.lifecycle.judging import analyze, bake_done
from shared.domain.model import (
    CONTROLLER,
    AnalysisProgress,
    BeginSwap,
    Observation,
    Phase,
    SwapProgress,
    SwapStatus,
    WebhookStage,
)

# Azure reports failed swaps after 11-23 minutes; a swap asked for this long ago has ended.
UNCONFIRMED_SWAP_SETTLES_SECONDS = 30 * 60


def start_promotion(d: Draft, why: str, *, actor: str = CONTROLLER) -> None:
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


def claim_swap(d: Draft, purpose: Literal["promote", "rollback"], message: str) -> None:
    """Claim the swap; the service starts it once this decision is saved."""
    changes = {"reached_production": True} if purpose == "promote" else {}
    d.update(swap=SwapProgress(purpose, d.now), **changes)
    d.emit(BeginSwap(purpose))
    d.record("swap.requested" if purpose == "promote" else "rollback.swapBack", message)


def swap_overdue(d: Draft) -> bool:
    """A started swap still running past the progress deadline, counted from when it was claimed."""
    swap = d.release.swap
    limit = timedelta(seconds=d.release.spec.analysis.progress_deadline_seconds)
    return swap is not None and d.now - swap.claimed_at >= limit


def unconfirmed_swap_settling(d: Draft) -> bool:
    """A claimed swap whose start was never recorded, recent enough that it may still be running."""
    swap = d.release.swap
    return (
        swap is not None
        and swap.token is None
        and d.now - swap.claimed_at < timedelta(seconds=UNCONFIRMED_SWAP_SETTLES_SECONDS)
    )


def succeed(d: Draft, why: str, *, actor: str = CONTROLLER) -> None:
    d.transition(
        Phase.SUCCEEDED,
        "succeeded",
        f"{d.label} is live in production ({why})",
        actor=actor,
        swap=None,
        weight=0.0,
    )


def promoting(d: Draft, obs: Observation) -> None:
    r, slots = d.release, obs.slots
    if slots is None:
        return
    deadline = r.spec.analysis.progress_deadline_seconds
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
            succeed(d, "swap completed")
        return
    if r.swap is not None:
        if r.swap.token is None:
            if unconfirmed_swap_settling(d):
                if d.stalled(deadline):
                    d.rollback(f"the swap did not complete within {format_duration(deadline)}")
                return
            claim_swap(
                d,
                "promote",
                f"the swap claimed at {r.swap.claimed_at:%H:%M:%S} never confirmed its start and production does "
                f"not run {d.label}: swapping slot {r.spec.target.slot} into production again",
            )
            return
        state = slots.swap
        if state is not None and state.status is SwapStatus.FAILED:
            d.update(swap=None)
            d.rollback(f"the swap into production failed: {state.message or 'no detail'}")
        elif state is not None and state.status is SwapStatus.SUCCEEDED:
            d.update(swap=None)
            d.rollback(f"the swap reported success but production runs release {slots.production_release or 'unknown'}")
        elif swap_overdue(d):
            # Still running, or its status could not be read (then the slots decide: production
            # running the release was taken as done above).
            d.rollback(f"the swap did not complete within {format_duration(deadline)}")
        return
    if r.paused:
        return
    if d.stalled(deadline):
        d.rollback(f"the swap could not start within {format_duration(deadline)}")
        return
    if not gate_passed(d, obs, WebhookStage.BEFORE_PROMOTION):
        return  # the last word before the swap, whoever promoted
    if not converge_weight(d, slots.weight):
        # No user is sent to the old version through the slot after the swap.
        d.record("promotion.routeCleared", f"routing rule cleared (0%) before swapping {d.label} into production")
    d.update(weight=0.0)
    claim_swap(d, "promote", f"swapping slot {r.spec.target.slot} ({d.label}) into production")


def guarding(d: Draft, obs: Observation) -> None:
    r = d.release
    if obs.slots is not None and obs.slots.production_release != r.id:
        d.rollback(
            f"production runs release {obs.slots.production_release or 'unknown'}, not this one "
            "(swapped outside the controller?)"
        )
        return
    if obs.slots is not None:
        converge_weight(d, obs.slots.weight, drift="the slot holds the previous version; removing the rule")
    analyze(d, obs, compare_to_stable=False)
    if d.release.phase is not Phase.GUARDING or d.release.paused:
        return
    guard = r.spec.strategy.guard_seconds
    if d.now < (r.phase_since or d.now) + timedelta(seconds=guard):
        return
    if bake_done(d, "guard window", guard):
        succeed(d, f"guard window of {format_duration(guard)} passed")
