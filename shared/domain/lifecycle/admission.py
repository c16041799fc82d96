"""Admission and the queue: a release's arrival on its site, its turn, and the site's hand-over.

One release at a time owns a site (invariant 3). A newer release cancels one that is still only
being prepared (deploying or validating, no user traffic yet); otherwise it waits in the queue,
where a newer arrival replaces it. A failed release keeps the site until its slots are seen clean
or a person releases it, so the next release never deploys onto slots nobody cleaned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime

from shared.domain.durations import format_duration
from shared.domain.lifecycle.draft import Draft, OverrideRefused, pct
from shared.domain.lifecycle.holding import held
from shared.domain.model import (
    CONTROLLER,
    QUARANTINE_KEPT,
    Actor,
    AuditEntry,
    Decision,
    EffectivePolicy,
    LastGood,
    Observation,
    Override,
    Phase,
    Quarantine,
    Release,
    ReleaseSpec,
    SiteState,
    Target,
)

# Phases a newer release may cancel, as long as no user traffic has reached the release.
SUPERSEDABLE = frozenset({Phase.PENDING, Phase.DEPLOYING, Phase.VALIDATING, Phase.AWAITING_APPROVAL})
MAX_RETRIES = 99


@dataclass(frozen=True)
class Admission:
    """A new release's arrival: the site's new state and every release row that changes."""

    site: SiteState
    decisions: tuple[Decision, ...]


def supersedable(release: Release) -> bool:
    return release.phase in SUPERSEDABLE and not release.has_reached_users


def new_release(
    spec: ReleaseSpec,
    now: datetime,
    *,
    actor: str,
    source: str,
    submitters: tuple[Actor, ...] = (),
    policy: EffectivePolicy | None = None,
) -> Decision:
    release = Release(
        spec=spec,
        created_at=now,
        phase_since=now,
        updated_at=now,
        next_check_at=now,
        submitters=submitters,
        policy=policy,
    )
    t = spec.target
    requested = f", requested by {spec.metadata.requested_by}" if spec.metadata.requested_by else ""
    plan = (
        " then ".join(f"{pct(s.weight)} for {format_duration(s.bake_seconds)}" for s in spec.strategy.steps)
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
        {
            "commit": spec.metadata.commit,
            "pipelineUrl": spec.metadata.pipeline_url,
            "retryOf": spec.retry_of,
            "submitters": [s.id for s in submitters],
        },
    )
    entries = [entry]
    if policy is not None:
        changed = "; ".join(policy.changes)
        entries.append(
            AuditEntry(
                now,
                CONTROLLER,
                "policy.applied",
                f"admitted under release policy rule {policy.rule} ({policy.digest})"
                + (f": {changed}" if changed else "")
                + ("; two-person rule: a submitter may not approve it" if policy.two_person else ""),
                Phase.PENDING,
                Phase.PENDING,
                0.0,
                {"rule": policy.rule, "digest": policy.digest, "changes": list(policy.changes)},
            )
        )
    return Decision(release, (), tuple(entries))


def _cancel_superseded(release: Release, by: Release, now: datetime) -> Decision:
    d = Draft(release, now)
    reason = f"superseded by release {by.id} (version {by.spec.version}) before any user traffic reached it"
    d.transition(Phase.CANCELLED, "superseded", f"cancelled: {reason}", reason=reason, superseded_by=by.id)
    return d.finish()


def _why_waiting(active: Release) -> str:
    if active.holds_site:
        return (
            f"release {active.id} failed on this site and holds it until its slots are seen clean "
            f"or a person releases the site (POST .../{active.id}/release-site)"
        )
    if active.phase is Phase.ROLLING_BACK:
        return f"release {active.id} is rolling back on this site"
    return f"release {active.id} is {active.phase} on this site and has reached users"


def admit(
    site: SiteState, created: Decision, active: Release | None, queued: Release | None, now: datetime
) -> Admission:
    """Place a new release on its site: start it, queue it, or let it supersede idle ones."""
    new = created.release
    decisions: list[Decision] = []
    audit = list(created.audit)
    if active is None or active.frees_site or active.id == new.id:
        site = replace(site, active=new.id)
    elif supersedable(active):
        decisions.append(_cancel_superseded(active, new, now))
        site = replace(site, active=new.id)
    else:
        site = replace(site, queued=new.id)
        audit.append(
            AuditEntry(
                now,
                CONTROLLER,
                "release.queued",
                f"queued: {_why_waiting(active)}; this release starts when the site is free",
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
    """The site once ``release`` no longer holds it: the queue moves up; a success becomes the
    last good release."""
    if not release.frees_site:
        return site
    if site.active == release.id:
        site = replace(site, active=site.queued, queued=None)
    elif site.queued == release.id:
        site = replace(site, queued=None)
    if release.phase is Phase.SUCCEEDED:
        spec = release.spec
        site = replace(site, last_good=LastGood(release.id, spec.version, spec.artifact, dict(spec.app_settings)))
    policy = release.policy
    if release.phase is Phase.ROLLED_BACK and (policy is None or policy.quarantine != "off"):
        entry = Quarantine(
            release.spec.version,
            release.id,
            release.reason or "rolled back",
            release.finished_at or release.updated_at or release.created_at,
            policy.rule if policy else "",
        )
        kept = tuple(q for q in site.quarantined if q.version != entry.version)
        site = replace(site, quarantined=(*kept, entry)[-QUARANTINE_KEPT:])
    return site


def redeploy_release_id(source: str, site: str) -> str:
    """The id of ``source``'s redeploy to ``site``: the same on every attempt (so a repeat is the
    same release), within the 128 characters an id may have."""
    suffix = f":dr:{site.lower()}"
    return source[: 128 - len(suffix)] + suffix


def plan_redeploy(source: Release, new_id: str, to: Target, actor: Actor, reason: str, now: datetime) -> Decision:
    """The source release, linked to its redeploy on another site (recorded before the redeploy is
    created, so the link is never missing; a repeat of the command links once)."""
    d = Draft(source, now)
    if new_id not in source.redeployed_as:
        d.update(redeployed_as=(*source.redeployed_as, new_id))
    d.record(
        "redeploy.requested",
        f"redeploying {d.label} to {to.site} ({to.resource_group}) as release {new_id} by {actor.label}: {reason}",
        actor=actor.label,
        to=to.site_key,
        releaseId=new_id,
    )
    return d.finish()


def lift_quarantine(
    rolled_back: Release, site: SiteState, version: str, actor: Actor, reason: str, now: datetime
) -> tuple[Decision, SiteState]:
    """An admin lifts a quarantine: the site forgets it, and the rolled-back release's audit says who
    lifted it and why."""
    d = Draft(rolled_back, now)
    where = rolled_back.spec.target.site
    d.record(
        "quarantine.lifted",
        f"quarantine of version {version} on {where} lifted by {actor.label}: {reason}",
        actor=actor.label,
        version=version,
    )
    return d.finish(), replace(site, quarantined=tuple(q for q in site.quarantined if q.version != version))


def quarantine_refusal(version: str, rule: str, scope: str, sites: list[SiteState]) -> str | None:
    """Why a new release of ``version`` is refused: it was rolled back on its site (``sites[0]``),
    or, with ``scope`` "app", on any site released under the same policy rule."""
    if scope == "off":
        return None
    for n, site in enumerate(sites):
        q = site.quarantine_of(version)
        if q is None or (n > 0 and (scope != "app" or q.rule != rule)):
            continue
        where = "on this site" if n == 0 else f"on {site.site_key.split('~')[-1]} (policy rule {rule})"
        return (
            f"version {version} is quarantined {where}: release {q.release_id} was rolled back at "
            f"{q.at:%Y-%m-%d %H:%M}Z: {q.reason}. An admin may lift the quarantine with a reason "
            f"(POST /api/sites/{site.site_key}/quarantine/{version}/lift)"
        )
    return None


def pending(d: Draft, obs: Observation) -> None:
    r = d.release
    if obs.site.active != r.id or r.paused:
        return
    if held(d, obs, "it starts"):
        return
    d.transition(
        Phase.DEPLOYING,
        "deploy.started",
        f"site {r.spec.target.site} is free; deploying {d.label} to slot {r.spec.target.slot}",
    )


# ---------------------------------------------------------------------------------------------
# Retry: a new release with the same plan
# ---------------------------------------------------------------------------------------------

_RETRY_SUFFIX = re.compile(r"-retry(\d+)\Z")


def retry_release_ids(release_id: str) -> list[str]:
    """Candidate ids for a retry, in order: ``<base>-retry<n+1>``, then higher numbers (an id may be
    taken already, even by another site)."""
    match = _RETRY_SUFFIX.search(release_id)
    base = release_id[: match.start()] if match else release_id
    first = int(match.group(1)) + 1 if match else 1
    ids = []
    for attempt in range(first, first + MAX_RETRIES):
        suffix = f"-retry{attempt}"
        ids.append(base[: 128 - len(suffix)] + suffix)
    return ids


def retry_refusal(release: Release) -> str | None:
    if release.phase not in (Phase.FAILED, Phase.ROLLED_BACK):
        return f"only a failed or rolled-back release can be retried; this one is {release.phase}"
    if release.retried_as:
        return f"already retried as release {release.retried_as}"
    return None


def plan_retry(old: Release, override: Override, new_id: str, now: datetime) -> tuple[Decision, Decision]:
    """A new release with the old one's plan under ``new_id``, and the old one marked as retried."""
    refusal = retry_refusal(old)
    if refusal is not None:
        raise OverrideRefused(refusal)
    spec = replace(old.spec, release_id=new_id, retry_of=old.id)
    who = override.actor.label
    # The same plan, admitted under the same policy; whoever retried it counts as a submitter too
    # (the two-person rule keeps them from approving it).
    submitters = (override.actor, *(s for s in old.submitters if s.id != override.actor.id))
    created = new_release(
        spec, now, actor=who, source=f"retry of {old.id}: {override.reason}", submitters=submitters, policy=old.policy
    )
    d = Draft(old, now)
    d.update(retried_as=new_id)
    d.record("override.retry", f"retried as release {new_id} by {who}: {override.reason}", actor=who)
    return created, d.finish()
