"""Rollback: the new version out of traffic (weight 0, or the swap back), the slot restored with the
last good release; and the watch a failed release keeps over its site until it is seen clean."""

from __future__ import annotations

from typing import Any

from shared.domain.analysis import judge
from shared.domain.durations import format_duration
from shared.domain.lifecycle.desired import converge_weight
from shared.domain.lifecycle.draft import Draft, weight_is
from shared.domain.lifecycle.promotion import claim_swap, swap_overdue, unconfirmed_swap_settling
from shared.domain.model import Observation, Phase, Release, RestoreStaging, SwapStatus


def rolling_back(d: Draft, obs: Observation) -> None:
    r, slots = d.release, obs.slots
    if slots is None:
        return
    deadline = r.spec.analysis.progress_deadline_seconds
    in_production = slots.production_release == r.id
    if r.swap is not None and r.swap.token is None:
        # A swap claimed but never confirmed: what the slots show says whether it ran.
        happened = in_production if r.swap.purpose == "promote" else not in_production
        if not happened and unconfirmed_swap_settling(d):
            if not converge_weight(d, slots.weight):
                d.record("rollback.weight", f"routing 0% of traffic to {d.label}")
            return  # it may still be running: wait until it has certainly ended
        d.update(swap=None)
    elif r.swap is not None:
        state = slots.swap
        happened = in_production if r.swap.purpose == "promote" else not in_production
        running = state is None or state.status in (SwapStatus.IN_PROGRESS, SwapStatus.UNKNOWN)
        if running and not happened:  # the slots are the truth: a swap they show done is done
            if swap_overdue(d):
                d.fail(
                    f"the {r.swap.purpose} swap claimed at {r.swap.claimed_at:%H:%M:%S} did not finish within "
                    f"{format_duration(deadline)}; check the slot swap status"
                )
            return
        d.update(swap=None)
        if not happened and state is not None and state.status is SwapStatus.FAILED and r.swap.purpose == "rollback":
            d.fail(
                f"could not swap the previous version back into production ({state.message or 'no detail'}); "
                f"production may still run {d.label}: swap slot {r.spec.target.slot} with production by hand"
            )
            return
    if in_production:
        if d.stalled(deadline):
            d.fail(f"production still runs {d.label} after {format_duration(deadline)} of rolling back")
            return
        claim_swap(d, "rollback", f"production runs {d.label}; swapping the previous version back")
        return
    if not weight_is(slots.weight, 0):
        if d.stalled(deadline):
            d.fail(f"could not take {d.label} out of traffic within {format_duration(deadline)}")
            return
        converge_weight(d, slots.weight)
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
    d.alert(
        "warning",
        f"release {r.id} rolled back: {r.reason or 'requested'}",
        event="rolledBack",
        reason=r.reason or "requested",
        measurements=judged_evidence(r),
    )


def judged_evidence(r: Release) -> list[dict[str, Any]]:
    """The release's last evidence as the analysis judged it: each provider's numbers and limits."""
    return [dict(judge(e, r.spec.analysis).numbers) for e in r.analysis.evidence]


def failed(d: Draft, obs: Observation) -> None:
    """A failed release holds its site until its slots are seen clean: no routing rule sends users to
    the slot, production does not run it, and no swap of it can still be running."""
    r, slots = d.release, obs.slots
    if not r.holds_site or slots is None:
        return
    if r.swap is not None and r.swap.token is not None:
        if slots.swap is None or slots.swap.status in (SwapStatus.IN_PROGRESS, SwapStatus.UNKNOWN):
            return  # a swap of it is still running (or its status could not be read)
        d.update(swap=None)
        d.record("swap.ended", f"the {r.swap.purpose} swap it started has ended ({slots.swap.status})")
    if not weight_is(slots.weight, 0) or slots.production_release == r.id or unconfirmed_swap_settling(d):
        return
    d.update(holds_site=False, swap=None)
    d.record(
        "site.released",
        f"slots seen clean: no routing rule sends users to slot {r.spec.target.slot} and production runs release "
        f"{slots.production_release or 'unknown'}; the site is free for the next release",
    )
