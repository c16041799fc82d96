"""Overrides: a person's instruction, recorded as intent with an ETag-guarded write. They never
touch the platform; the next decide() reconciles the slots with them."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from shared.domain.lifecycle.admission import retry_refusal
from shared.domain.lifecycle.draft import Draft, IllegalTransition, OverrideRefused
from shared.domain.lifecycle.holding import schedule_hold
from shared.domain.lifecycle.promotion import UNCONFIRMED_SWAP_SETTLES_SECONDS, start_promotion, succeed
from shared.domain.lifecycle.shifting import complete_step, start_step
from shared.domain.model import Actor, ActorKind, Decision, Gate, Override, OverrideKind, Phase, Release, Role


def swap_still_possible(release: Release, now: datetime) -> str | None:
    """A swap of the release may still be running: the next release would deploy into a slot being
    swapped. A started swap counts until the controller has seen it end; one whose start was never
    confirmed, until any swap asked for then has certainly ended."""
    swap = release.swap
    if swap is None:
        return None
    asked = f"a {swap.purpose} swap of this release, asked for at {swap.claimed_at:%H:%M:%S} UTC,"
    if swap.token is not None:
        return (
            f"{asked} has not been seen to end; the next release would deploy into a slot being swapped: wait "
            "for it (the controller frees the site itself once it sees the slots clean)"
        )
    until = swap.claimed_at + timedelta(seconds=UNCONFIRMED_SWAP_SETTLES_SECONDS)
    if now >= until:
        return None
    return f"{asked} may still be running: wait until {until:%H:%M:%S} UTC"


def approval_refusal(release: Release, kind: OverrideKind, actor: Actor) -> str | None:
    """Who may approve (or promote-full, which approves the swap): a signed-in person with the role
    (and group) the release's policy names, who is not one of the release's submitters."""
    if actor.kind is not ActorKind.PERSON:
        return "approvals need a signed-in person (App Service authentication); a function key or a pipeline cannot"
    policy = release.policy
    if kind is OverrideKind.APPROVE and release.gate is Gate.BEFORE_TRAFFIC:
        rule = policy.before_traffic if policy else None
    else:
        rule = policy.before_promotion if policy else None
    required = rule.role if rule else Role.APPROVER
    if required not in actor.roles:
        return f"approving this release needs the role {required}; {actor.label} does not have it"
    if rule is not None and rule.group and rule.group not in actor.groups:
        return f"approving this release needs membership of group {rule.group}; {actor.label} is not a member"
    if policy is None or policy.two_person:
        for submitter in release.submitters:
            if submitter.id == actor.id:
                return f"two-person rule: {actor.label} submitted or signed this release; someone else must approve it"
    return None


def override_refusal(
    release: Release,
    kind: OverrideKind,
    now: datetime | None = None,
    actor: Actor | None = None,
    *,
    stop: str | None = None,
) -> str | None:
    """Why ``kind`` is not allowed now (for ``actor``, when given; ``stop``: the global stop's
    reason, when it is pulled), or None when it is."""
    phase = release.phase
    advances = kind in (OverrideKind.APPROVE, OverrideKind.PROMOTE_FULL) or (
        kind is OverrideKind.PROMOTE and phase is Phase.SHIFTING
    )
    if advances and now is not None and not phase.is_final:
        hold = schedule_hold(release, now, stop)
        if hold is not None:
            return f"the deployment schedule holds the release: {hold[0]}" + (
                "" if stop else "; an admin may let it through (ignore-schedule)"
            )
    if kind is OverrideKind.IGNORE_SCHEDULE:
        if phase.is_final:
            return f"the release is final ({phase})"
        if release.schedule_override is not None:
            return f"the release already ignores its schedule ({release.schedule_override})"
        return None
    if kind is OverrideKind.RETRY:
        return retry_refusal(release)
    if kind is OverrideKind.RELEASE_SITE:
        if phase is not Phase.FAILED:
            return f"only a failed release keeps its site after it ends; this one is {phase}"
        if not release.holds_site:
            return "the site is already free"
        return None if now is None else swap_still_possible(release, now)
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
    if kind in (OverrideKind.APPROVE, OverrideKind.PROMOTE_FULL) and actor is not None:
        return approval_refusal(release, kind, actor)
    return None


def apply_override(release: Release, override: Override, now: datetime, *, stop: str | None = None) -> Decision:
    """Record a person's instruction; the next decide() reconciles the slots with it."""
    kind = override.kind
    if kind is OverrideKind.RETRY:
        raise OverrideRefused("retry creates a new release: use plan_retry")
    refusal = override_refusal(release, kind, now, override.actor, stop=stop)
    if refusal is not None:
        raise OverrideRefused(refusal)
    d = Draft(release, now)
    actor, why = override.actor.label, override.reason
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
            complete_step(d, None, actor=actor, why=f", promoted{by}")
        else:
            succeed(d, f"guard window ended early{by}", actor=actor)
    elif kind is OverrideKind.PROMOTE_FULL:
        d.update(paused=False, inconclusive=False, pause_reason=None)
        if phase is Phase.GUARDING:
            succeed(d, f"guard window ended early{by}", actor=actor)
        else:
            start_promotion(d, f"remaining steps and gates skipped{by}", actor=actor)
    elif kind is OverrideKind.ROLLBACK:
        if phase is Phase.PENDING:
            d.transition(Phase.CANCELLED, "cancelled", f"cancelled before it started{by}", actor=actor, reason=why)
        else:
            d.rollback(f"requested{by}", actor=actor)
    elif kind is OverrideKind.APPROVE:
        if release.gate is Gate.BEFORE_TRAFFIC:
            start_step(d, 0, actor=actor, why=f" (approved{by})")
        else:
            start_promotion(d, f"approved{by}", actor=actor)
    elif kind is OverrideKind.IGNORE_SCHEDULE:
        d.update(schedule_override=f"{actor}: {why}")
        d.record(
            "override.ignoreSchedule", f"the site's windows and freezes no longer hold this release{by}", actor=actor
        )
    elif kind is OverrideKind.RELEASE_SITE:
        d.update(holds_site=False, next_check_at=None)
        d.record(
            "override.releaseSite",
            f"site released{by}; the controller did not see the slots clean, so the next release starts on "
            "them as they are",
            actor=actor,
        )
    if not d.release.is_final:
        d.update(next_check_at=now)
    if d.effects:
        raise IllegalTransition("an override asked for a platform action; only decide() may")
    return d.finish()
