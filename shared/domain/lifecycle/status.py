"""What a release is doing, in plain words: what it waits for, and until when.

The release view (HTTP, ``releasectl``) shows this first, so nobody has to read the audit to learn
why nothing seems to happen: "baking step 2/3 (25%) until 14:05:00Z; 412 of 500 requests so far",
"queued behind web-1.4.1", "waiting for approval by an approver".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from shared.domain.lifecycle.draft import pct
from shared.domain.model import Gate, Phase, Release, SiteState

Waiting = Literal["site", "platform", "validation", "approval", "gate", "bake", "guard", "person", "retry", "schedule"]


@dataclass(frozen=True)
class Status:
    summary: str
    waiting_for: Waiting | None = None
    until: datetime | None = None  # when what it waits for ends (a bake, a guard window), if known
    next_check_at: datetime | None = None  # when the controller looks at it next


def _at(moment: datetime | None) -> str:
    return moment.strftime("%H:%M:%SZ") if moment is not None else "?"


def _evidence(r: Release) -> str:
    """How much evidence the current step (or guard window) has, against what a verdict needs."""
    needed = r.spec.analysis.min_requests
    seen = max((e.canary.requests for e in r.analysis.evidence), default=0)
    verdict = f"; last verdict: {r.analysis.last_outcome}" if r.analysis.last_outcome else ""
    return f"{seen} of {needed} requests so far{verdict}"


def _approvers(r: Release, gate: Gate | None) -> str:
    rule = None
    if r.policy is not None:
        rule = r.policy.before_traffic if gate is Gate.BEFORE_TRAFFIC else r.policy.before_promotion
    who = f"a person with the {rule.role.value} role" if rule is not None else "an approver"
    if rule is not None and rule.group:
        who += f" in group {rule.group}"
    if r.policy is None or r.policy.two_person:
        who += ", not one of its submitters"
    return who


def new_version_share(r: Release) -> float:
    """The share of production traffic the new version serves, in percent: the routing rule's weight
    until the swap, all of it once production runs it (the rule is then 0: nothing is left to route)."""
    return 100.0 if r.phase in (Phase.GUARDING, Phase.SUCCEEDED) else r.weight


def status(r: Release, site: SiteState | None = None) -> Status:
    """``site``: the release's site row, to say what a queued release waits behind."""
    nxt = r.next_check_at
    if r.transient_failures and not r.is_final:
        return Status(
            f"{r.phase.value}: the platform failed {r.transient_failures} time(s) in a row; trying again at "
            f"{_at(nxt)} (see the audit for the error)",
            "retry",
            next_check_at=nxt,
        )
    if r.paused and not r.is_final:
        why = r.pause_reason or "paused by a person"
        return Status(f"paused in {r.phase.value}: {why}; resume, promote or roll back", "person", next_check_at=nxt)
    if r.held is not None and not r.is_final:
        until = f" until {r.held_until:%Y-%m-%d %H:%M}Z" if r.held_until else ""
        where = "before it starts" if r.phase is Phase.PENDING else f"in {r.phase.value}"
        return Status(f"held by the deployment schedule {where}{until}: {r.held}", "schedule", r.held_until, nxt)
    phase = r.phase
    if phase is Phase.PENDING:
        if site is not None and site.active and site.active != r.id:
            return Status(f"queued behind {site.active}; starts when the site is free", "site", next_check_at=nxt)
        return Status("starting", "platform", next_check_at=nxt)
    if phase is Phase.DEPLOYING:
        return Status(
            f"deploying version {r.spec.version} to slot {r.spec.target.slot} (attempt {max(1, r.deploy_attempts)}); "
            f"checking whether it runs and answers at {_at(nxt)}",
            "platform",
            next_check_at=nxt,
        )
    if phase is Phase.VALIDATING:
        v, needed = r.validation, r.spec.validation.consecutive_successes
        return Status(
            f"validating slot {r.spec.target.slot}: {v.streak} of {needed} rounds passed in a row; "
            f"next round at {_at(nxt)}",
            "validation",
            next_check_at=nxt,
        )
    if r.gate_pending is not None:
        return Status(
            f"asking the {r.gate_pending.value} webhook gates; again at {_at(nxt)}", "gate", next_check_at=nxt
        )
    if phase is Phase.AWAITING_APPROVAL:
        where = "before any user traffic" if r.gate is Gate.BEFORE_TRAFFIC else "before the swap into production"
        return Status(f"waiting for approval by {_approvers(r, r.gate)} ({where})", "approval", next_check_at=nxt)
    if phase is Phase.SHIFTING and 0 <= r.step < len(r.steps):
        step = r.steps[r.step]
        label = f"step {r.step + 1}/{len(r.steps)} ({pct(step.weight)})"
        if r.step_started_at is None:
            return Status(f"{label}: routing set, verifying at {_at(nxt)}", "platform", next_check_at=nxt)
        end = r.step_started_at + timedelta(seconds=step.bake_seconds)
        if r.analysis.extension_until is not None:
            end = max(end, r.analysis.extension_until)
        waiting = f"baking {label} until {_at(end)}" if nxt is None or end > nxt else f"judging {label}"
        return Status(f"{waiting}; {_evidence(r)}; next analysis at {_at(nxt)}", "bake", end, nxt)
    if phase is Phase.PROMOTING:
        if r.swap is None:
            return Status("clearing the routing rule before the swap into production", "platform", next_check_at=nxt)
        state = "running" if r.swap.token else "claimed, starting"
        return Status(
            f"swapping slot {r.spec.target.slot} into production ({state} since {_at(r.swap.claimed_at)}); "
            f"checking at {_at(nxt)}",
            "platform",
            next_check_at=nxt,
        )
    if phase is Phase.GUARDING:
        end = (r.phase_since or r.created_at) + timedelta(seconds=r.spec.strategy.guard_seconds)
        return Status(
            f"watching production until {_at(end)}, the previous version kept warm; {_evidence(r)}",
            "guard",
            end,
            nxt,
        )
    if phase is Phase.ROLLING_BACK:
        return Status(f"rolling back: {r.reason or 'requested'}; checking at {_at(nxt)}", "platform", next_check_at=nxt)
    if phase is Phase.FAILED:
        if r.holds_site:
            return Status(
                f"failed: {r.reason}; holds the site until its slots are seen clean (looks again at {_at(nxt)}) "
                f"or a person releases it",
                "person",
                next_check_at=nxt,
            )
        return Status(f"failed: {r.reason}")
    ended = {
        Phase.SUCCEEDED: f"succeeded at {_at(r.finished_at)}: production runs version {r.spec.version}",
        Phase.ROLLED_BACK: f"rolled back at {_at(r.finished_at)}: {r.reason}",
        Phase.CANCELLED: f"cancelled: {r.reason}",
    }
    return Status(ended.get(phase, phase.value))
