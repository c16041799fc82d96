"""Waves: one release over several sites (typically the same app in several regions), in ordered
waves with a bake between them and a limit on sites in flight.

A rollout composes ordinary per-site releases, each with its own plan, analysis, lifecycle and
invariants; this module only decides, from what its sites' releases did, which sites start next,
when a wave is done, and what a failure stops. Pure: a rollout and its children's phases in, the
next rollout and what to do out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from shared.domain.model import CONTROLLER, Phase, ReleaseSpec

# How often a running rollout looks at its sites' releases (the timer's period bounds it too).
ROLLOUT_POLL_SECONDS = 30
MAX_SITES = 50
MAX_LOG = 300

# Azure's region pairs (Microsoft Learn, "Azure region pairs and nonpaired regions"): two regions
# of a pair are never released in the same wave unless the policy allows it.
REGION_PAIRS: frozenset[frozenset[str]] = frozenset(
    frozenset(pair)
    for pair in (
        ("australiacentral", "australiacentral2"),
        ("australiaeast", "australiasoutheast"),
        ("eastasia", "southeastasia"),
        ("brazilsouth", "southcentralus"),
        ("brazilsoutheast", "brazilsouth"),
        ("canadacentral", "canadaeast"),
        ("northeurope", "westeurope"),
        ("germanywestcentral", "germanynorth"),
        ("centralindia", "southindia"),
        ("japaneast", "japanwest"),
        ("koreacentral", "koreasouth"),
        ("eastus", "westus"),
        ("eastus2", "centralus"),
        ("northcentralus", "southcentralus"),
        ("westus2", "westcentralus"),
        ("westus3", "eastus"),
        ("norwayeast", "norwaywest"),
        ("switzerlandnorth", "switzerlandwest"),
        ("uksouth", "ukwest"),
        ("uaenorth", "uaecentral"),
        ("francecentral", "francesouth"),
        ("southafricanorth", "southafricawest"),
        ("swedencentral", "swedensouth"),
    )
)


def paired(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    return frozenset((a.lower().replace(" ", ""), b.lower().replace(" ", ""))) in REGION_PAIRS


@dataclass(frozen=True)
class Wave:
    sites: tuple[str, ...]  # site names, lower case, in the order they start
    max_in_flight: int = 1
    bake_seconds: int = 0  # after every site of the wave succeeded, before the next wave starts


@dataclass(frozen=True)
class FleetSite:
    """One site of a rollout, as admitted: its release's plan (and the policy that applies)."""

    site: str
    region: str | None
    spec: ReleaseSpec
    policy: Any  # EffectivePolicy, as admitted


@dataclass(frozen=True)
class RolloutSpec:
    rollout_id: str
    version: str
    sites: tuple[FleetSite, ...]
    waves: tuple[Wave, ...]
    on_failure: str = "keep"  # or "rollbackAll": the sites already done go back to what they ran
    fingerprint: str = ""  # the plan as sent (the same id for another plan is refused)

    def site(self, name: str) -> FleetSite:
        return next(s for s in self.sites if s.site == name)


@dataclass(frozen=True)
class SiteRun:
    site: str
    release_id: str
    wave: int
    state: str = "waiting"  # waiting, running, succeeded, failed, reverting, reverted, revertFailed, kept
    outcome: str | None = None
    previous: str | None = None  # the site's last good release when this one started
    revert_id: str | None = None


@dataclass(frozen=True)
class LogEntry:
    at: datetime
    actor: str
    action: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


FINAL = ("succeeded", "stopped", "rolledBack")


@dataclass(frozen=True)
class Rollout:
    spec: RolloutSpec
    created_at: datetime
    runs: tuple[SiteRun, ...]
    phase: str = "running"  # running, baking, stopping, then succeeded, stopped or rolledBack
    wave: int = 0
    bake_until: datetime | None = None
    reason: str | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    next_check_at: datetime | None = None
    log: tuple[LogEntry, ...] = ()
    submitters: tuple[Any, ...] = ()

    @property
    def id(self) -> str:
        return self.spec.rollout_id

    @property
    def is_final(self) -> bool:
        return self.phase in FINAL

    def run(self, site: str) -> SiteRun:
        return next(r for r in self.runs if r.site == site)


@dataclass(frozen=True)
class Child:
    """What a site's release did, as the service read it."""

    phase: Phase
    reason: str | None = None


@dataclass(frozen=True)
class RolloutDecision:
    rollout: Rollout
    start: tuple[str, ...] = ()  # sites whose release is to be created now
    roll_back: tuple[str, ...] = ()  # release ids to roll back (rollbackAll)
    revert: tuple[str, ...] = ()  # sites whose previous release is to be run again (rollbackAll)


def child_id(rollout_id: str, site: str) -> str:
    suffix = f":{site}"
    return rollout_id[: 128 - len(suffix)] + suffix


def revert_id(rollout_id: str, site: str) -> str:
    suffix = f":revert:{site}"
    return rollout_id[: 128 - len(suffix)] + suffix


def new_rollout(spec: RolloutSpec, now: datetime, *, actor: str, source: str, submitters: tuple[Any, ...]) -> Rollout:
    runs = tuple(
        SiteRun(site, child_id(spec.rollout_id, site), wave) for wave, w in enumerate(spec.waves) for site in w.sites
    )
    plan = "; ".join(
        f"wave {n + 1}: {', '.join(w.sites)} (at most {w.max_in_flight} at once"
        + (f", then {w.bake_seconds}s bake)" if w.bake_seconds and n + 1 < len(spec.waves) else ")")
        for n, w in enumerate(spec.waves)
    )
    entry = LogEntry(
        now,
        actor,
        "rollout.created",
        f"rollout of version {spec.version} over {len(runs)} sites accepted via {source}: {plan}",
    )
    return Rollout(spec, now, runs, updated_at=now, next_check_at=now, log=(entry,), submitters=submitters)


def paired_conflicts(spec: RolloutSpec) -> list[tuple[str, str]]:
    """(field, why) for every two sites of one wave whose regions are an Azure pair."""
    errors = []
    for n, wave in enumerate(spec.waves):
        regions = [(s, spec.site(s).region) for s in wave.sites]
        for i, (a, ra) in enumerate(regions):
            for b, rb in regions[i + 1 :]:
                if paired(ra, rb):
                    errors.append(
                        (
                            f"waves[{n}].sites",
                            f"{a} ({ra}) and {b} ({rb}) are paired Azure regions: release them in different waves",
                        )
                    )
    return errors


def decide_rollout(r: Rollout, children: Mapping[str, Child], now: datetime) -> RolloutDecision:
    """The next step of a rollout, from what its sites' releases (and reverts) did."""
    log: list[LogEntry] = []
    runs = {run.site: run for run in r.runs}

    def note(action: str, message: str, **details: Any) -> None:
        log.append(LogEntry(now, CONTROLLER, action, message, details))

    # 1. What the sites' releases did.
    for site, run in list(runs.items()):
        if run.state == "running" and run.release_id in children:
            child = children[run.release_id]
            if child.phase is Phase.SUCCEEDED:
                runs[site] = replace(run, state="succeeded", outcome="succeeded")
                note("site.succeeded", f"{site}: release {run.release_id} succeeded", site=site)
            elif child.phase.is_final:
                why = f"{child.phase.value}: {child.reason or 'no reason given'}"
                runs[site] = replace(run, state="failed", outcome=why)
                note("site.failed", f"{site}: release {run.release_id} {why}", site=site)
        elif run.state == "reverting" and run.revert_id in children:
            child = children[run.revert_id]
            if child.phase.is_final:
                state = "reverted" if child.phase is Phase.SUCCEEDED else "revertFailed"
                runs[site] = replace(run, state=state)
                note(f"site.{state}", f"{site}: the revert {run.revert_id} {child.phase.value}", site=site)

    phase, wave, bake_until, reason = r.phase, r.wave, r.bake_until, r.reason
    start: list[str] = []
    roll_back: list[str] = []
    revert: list[str] = []

    # 2. A failure stops every wave after it; the policy says what happens to the sites done.
    failed = [run for run in runs.values() if run.state == "failed"]
    if failed and phase in ("running", "baking"):
        first = failed[0]
        phase, bake_until = "stopping", None
        reason = f"{first.site} failed ({first.outcome}); no further site starts"
        note("rollout.stopped", f"stopped: {reason}; the sites already done: {r.spec.on_failure}")
        if r.spec.on_failure == "rollbackAll":
            roll_back += [run.release_id for run in runs.values() if run.state == "running"]
    if phase == "stopping" and r.spec.on_failure == "rollbackAll":
        # Every site that took the new version goes back: those done when it stopped, and any that
        # succeeded since (its rollback came too late).
        for site, run in list(runs.items()):
            if run.state == "succeeded" and run.previous:
                rid = revert_id(r.id, site)
                runs[site] = replace(run, state="reverting", revert_id=rid)
                revert.append(site)
                note("site.reverting", f"{site}: running its previous release {run.previous} again as {rid}")
            elif run.state == "succeeded":
                runs[site] = replace(run, state="kept")
                note("site.kept", f"{site}: no earlier release succeeded there: nothing to go back to")

    # 3. The current wave: start sites while there is room; move on once all of it succeeded.
    while True:
        if phase == "baking" and bake_until is not None and now >= bake_until:
            phase, wave, bake_until = "running", wave + 1, None
            note("wave.started", f"wave {wave + 1} starts: {', '.join(r.spec.waves[wave].sites)}", wave=wave + 1)
        if phase != "running":
            break
        current = r.spec.waves[wave]
        in_flight = sum(1 for s in current.sites if runs[s].state == "running")
        for s in current.sites:
            if runs[s].state == "waiting" and in_flight < current.max_in_flight:
                runs[s] = replace(runs[s], state="running")
                start.append(s)
                in_flight += 1
        if not all(runs[s].state == "succeeded" for s in current.sites):
            break
        if wave + 1 >= len(r.spec.waves):
            phase = "succeeded"
            note("rollout.succeeded", f"every site runs version {r.spec.version}")
            break
        phase, bake_until = "baking", now + timedelta(seconds=current.bake_seconds)
        note(
            "wave.completed", f"wave {wave + 1} done; the next starts at {bake_until:%Y-%m-%d %H:%M:%S}Z", wave=wave + 1
        )

    # 4. A stopping rollout ends once the sites still moving (and any reverts) have ended.
    busy = any(run.state in ("running", "reverting") for run in runs.values())
    if phase == "stopping" and not busy:
        if r.spec.on_failure == "rollbackAll":
            phase = "rolledBack"
            note("rollout.rolledBack", "every site that took the new version runs its previous release again")
        else:
            phase = "stopped"
            note("rollout.ended", "stopped: the sites done keep the new version; the failed ones rolled back")
    final = phase in FINAL
    next_check = None if final else (bake_until if phase == "baking" else now + timedelta(seconds=ROLLOUT_POLL_SECONDS))
    updated = replace(
        r,
        runs=tuple(runs[x.site] for x in r.runs),
        phase=phase,
        wave=wave,
        bake_until=bake_until,
        reason=reason,
        updated_at=now,
        finished_at=(r.finished_at or now) if final else None,
        next_check_at=next_check,
        log=(r.log + tuple(log))[-MAX_LOG:],
    )
    return RolloutDecision(updated, tuple(start), tuple(roll_back), tuple(revert))


def started(r: Rollout, site: str, previous: str | None, now: datetime) -> Rollout:
    """The site's release was created (``previous``: the site's last good release before it)."""
    run = r.run(site)
    entry = LogEntry(now, CONTROLLER, "site.started", f"{site}: release {run.release_id} created", {"site": site})
    runs = tuple(replace(x, previous=previous) if x.site == site else x for x in r.runs)
    return replace(r, runs=runs, log=(*r.log, entry)[-MAX_LOG:])


def refused(r: Rollout, site: str, why: str, now: datetime) -> Rollout:
    """The site's release could not be created (the policy or a quarantine refused it): it failed,
    which stops the rollout at its next decision."""
    runs = tuple(replace(x, state="failed", outcome=f"refused: {why}") if x.site == site else x for x in r.runs)
    entry = LogEntry(now, CONTROLLER, "site.refused", f"{site}: {why}", {"site": site})
    return replace(r, runs=runs, next_check_at=now, log=(*r.log, entry)[-MAX_LOG:])
