"""What every phase wants the site to look like, in one table, and how decide() gets it there.

decide() is level-triggered: each tick it compares what the platform reports with this table and
corrects any drift. Two rules keep invariant 9 ("traffic on a release never exceeds what its stored
phase allows") through crashes and lost saves:

- lowering traffic is always safe, so it happens at once, before the save;
- raising traffic happens only once a state that allows it is saved (write-ahead): the decision that
  enters a step saves first, and the weight is applied by the decision right after.

So whatever was applied before a save was lost, the stored phase allows at least that much.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.domain.lifecycle.draft import Draft, pct, weight_is
from shared.domain.model import Phase, Release, SetWeight


@dataclass(frozen=True)
class Shape:
    """The desired state of the site while a release is in a phase."""

    weight: str
    slot: str
    production: str


DESIRED: dict[Phase, Shape] = {
    Phase.PENDING: Shape("untouched (not its turn)", "untouched", "the last good release"),
    Phase.DEPLOYING: Shape("0", "this release, being deployed", "the last good release"),
    Phase.VALIDATING: Shape("0", "this release", "the last good release"),
    Phase.AWAITING_APPROVAL: Shape(
        "0 before traffic; the last step's weight before promotion", "this release", "the last good release"
    ),
    Phase.SHIFTING: Shape("the current step's weight", "this release", "the last good release"),
    Phase.PROMOTING: Shape("0 (cleared before the swap)", "this release, until the swap", "this release, after it"),
    Phase.GUARDING: Shape("0", "the previous release, kept warm", "this release"),
    Phase.ROLLING_BACK: Shape("0", "the last good release (restored)", "the last good release (swapped back)"),
    Phase.SUCCEEDED: Shape("untouched", "untouched", "this release"),
    Phase.ROLLED_BACK: Shape("untouched", "untouched", "the last good release"),
    Phase.FAILED: Shape("unknown until seen clean", "unknown", "unknown: a person must look"),
    Phase.CANCELLED: Shape("untouched", "untouched", "the last good release"),
}


def desired_weight(release: Release) -> float:
    """The routing share the release's slot should have now."""
    if release.phase is Phase.SHIFTING or (release.phase is Phase.AWAITING_APPROVAL and release.step >= 0):
        return release.steps[release.step].weight
    return 0.0


def allowed_weight(release: Release) -> float | None:
    """The most production traffic this state, once stored, lets the new version have; None when
    nobody knows (a failed release). A ceiling for the tests, and the write-ahead rule's bound."""
    phase = release.phase
    if phase is Phase.FAILED:
        return None
    if phase in (Phase.GUARDING, Phase.SUCCEEDED):
        return 100.0
    if phase in (Phase.PROMOTING, Phase.ROLLING_BACK) and release.reached_production:
        return 100.0
    if phase in (Phase.SHIFTING, Phase.AWAITING_APPROVAL, Phase.PROMOTING, Phase.ROLLING_BACK):
        return release.weight
    return 0.0


def converge_weight(d: Draft, observed: float, *, drift: str | None = None) -> bool:
    """Move the slot's routing share toward the phase's desired one; True when it is there.

    ``drift`` is the audit message for a share that moved away from a state already in place.
    """
    desired = desired_weight(d.release)
    if weight_is(observed, desired):
        return True
    ceiling = allowed_weight(d.stored)
    if desired > observed and (ceiling is None or desired > ceiling + 0.01):
        d.save_first()  # write-ahead: the weight goes up only once a state allowing it is saved
        return False
    if drift is not None:
        d.record("weight.drift", f"observed {pct(observed)} on {d.label}, expected {pct(desired)}: {drift}")
    d.update(weight=desired)
    d.emit(SetWeight(desired))
    return False


def slot_still_runs_it(d: Draft, slot_release: str | None) -> bool:
    """From deploy to swap the slot must run this release; if something else was put there, users
    routed to the slot would reach it: roll back."""
    if slot_release == d.release.id:
        return True
    d.rollback(
        f"slot {d.release.spec.target.slot} now runs release {slot_release or 'none'}, not this one "
        "(deployed outside the controller?)"
    )
    return False
