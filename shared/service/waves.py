"""Rollouts: one release over several sites, in waves. The rollout only decides (shared.domain.waves)
and creates, rolls back or reverts per-site releases through the same intake as any release: each
site's release keeps its own lifecycle, checks, analysis, invariants and crash safety.

A rollout is looked at when it is created and at every timer tick until it ends. Its children are
created under ids derived from the rollout's (``<rollout>:<site>``), so a rollout saved after a
crash, or looked at by two workers at once, creates each of them once.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field, replace
from typing import Literal

from shared.authority.proofs import EventProof, ProofRefused
from shared.domain import policy, waves
from shared.domain.fleet_event import parse_rollout_event
from shared.domain.lifecycle import OverrideRefused
from shared.domain.model import Actor, ActorKind, OverrideKind, Phase, Release
from shared.domain.schema import SchemaError, spec_fingerprint
from shared.ports import ConcurrencyConflict, ReleaseIdConflict
from shared.service.base import TooManyConflicts, log
from shared.service.intake import Intake, Quarantined
from shared.service.overrides import Overrides


@dataclass
class RolloutResult:
    outcome: Literal["created", "duplicate", "rejected"]
    rollout: waves.Rollout | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)
    reason: str = ""
    refusal: Literal["invalid", "unproven", "forbidden", "conflict"] | None = None


def _controller(rollout_id: str) -> Actor:
    return Actor(id="controller", name=f"rollout {rollout_id}", kind=ActorKind.CI, roles=frozenset())


class Rollouts(Intake, Overrides):
    def ingest_rollout(
        self,
        body: bytes,
        *,
        message_id: str | None,
        source: str,
        proof: EventProof | None = None,
        caller: Actor | None = None,
        keep_rejections: bool = True,
    ) -> RolloutResult:
        """A rollout event: valid, from a proven origin, every site allowed by the policy, no paired
        regions in one wave unless every site's rule allows it. Refusals are stored like a release
        event's and never raised."""

        def refuse(
            kind: Literal["invalid", "unproven", "forbidden", "conflict"], errors: list[tuple[str, str]]
        ) -> RolloutResult:
            stored = "invalid" if kind == "conflict" else kind
            refused = self._refuse(body, message_id, source, stored, errors, keep_rejections)
            return RolloutResult("rejected", errors=refused.errors, reason=refused.reason, refusal=kind)

        try:
            event = parse_rollout_event(body, default_rollout_id=message_id)
            origin = self.authority.origin(body, proof or EventProof(), caller)
        except SchemaError as exc:
            return refuse("invalid", exc.errors)
        except ProofRefused as exc:
            return refuse("unproven", [(exc.field, exc.reason)])
        sites: list[waves.FleetSite] = []
        errors: list[tuple[str, str]] = []
        rules = []
        for i, (spec, region) in enumerate(event.sites):
            try:
                admitted = policy.admit(self.authority.policy, spec, origin)
            except policy.PolicyRefusal as exc:
                errors += [(f"targets[{i}]" + (f".{f}" if f else ""), m) for f, m in exc.errors]
                continue
            rules.append(self.authority.policy.rule_for(spec))
            sites.append(waves.FleetSite(spec.target.site.lower(), region, admitted.spec, admitted.policy))
        if errors:
            return refuse("forbidden", errors)
        on_failure = "rollbackAll" if any(r and r.rollout_on_failure == "rollbackAll" for r in rules) else "keep"
        spec = waves.RolloutSpec(
            event.rollout_id, event.version, tuple(sites), event.waves, on_failure, event.fingerprint
        )
        if not all(r and r.allow_paired_regions for r in rules):
            conflicts = waves.paired_conflicts(spec)
            if conflicts:
                return refuse("forbidden", conflicts)
        if origin.issuer is not None:
            reuse = self._spend_token(origin, event.rollout_id, hashlib.sha256(body).hexdigest())
            if reuse is not None:
                return refuse("unproven", [reuse])
        submitters = (origin.actor,) + ((caller,) if caller is not None and caller.id != origin.actor.id else ())
        rollout = waves.new_rollout(
            spec, self.clock.now(), actor=origin.actor.label, source=source, submitters=submitters
        )
        if not self.store.create_rollout(rollout):
            existing = self.store.load_rollout(event.rollout_id).value
            if existing.spec.fingerprint and existing.spec.fingerprint != event.fingerprint:
                return refuse("conflict", [("rolloutId", "is already used by a different rollout")])
            return RolloutResult("duplicate", existing)
        log.info("rollout %s created over %d sites", event.rollout_id, len(sites))
        return RolloutResult("created", self.reconcile_rollout(event.rollout_id))

    def reconcile_rollout(self, rollout_id: str) -> waves.Rollout:
        """Look at a rollout's sites and take its next step. Raises RolloutNotFound, TooManyConflicts."""
        for _ in range(self.conflict_retries):
            loaded = self.store.load_rollout(rollout_id)
            r = loaded.value
            if r.is_final:
                return r
            children: dict[str, waves.Child] = {}
            for run in r.runs:
                for rid in (run.release_id if run.state == "running" else None, run.revert_id):
                    if rid:
                        found = self.store.find_release(rid)
                        if found is not None:
                            children[rid] = waves.Child(found.value.phase, found.value.reason)
            decision = waves.decide_rollout(r, children, self.clock.now())
            after = self._carry_out(decision)
            try:
                self.store.save_rollout(after, loaded.etag)
            except ConcurrencyConflict:
                continue  # another worker moved it: look again (its children exist once, by id)
            return after
        raise TooManyConflicts(f"rollout {rollout_id} kept changing; try again")

    def _carry_out(self, decision: waves.RolloutDecision) -> waves.Rollout:
        """Create, roll back and revert the sites' releases the decision asks for; the rollout as
        it stands after them (a site whose release was refused has failed)."""
        r = decision.rollout
        by = _controller(r.id)
        for site in decision.start:
            planned = r.spec.site(site)
            previous = self._previous_good(planned.spec.target.site_key, planned.spec.release_id)
            try:
                self.submit(
                    planned.spec,
                    actor=f"rollout {r.id}",
                    source=f"rollout {r.id}, wave {r.wave + 1}",
                    fingerprint=spec_fingerprint(planned.spec),
                    submitters=r.submitters,
                    effective=planned.policy,
                )
            except (Quarantined, ReleaseIdConflict) as exc:
                r = waves.refused(r, site, str(exc), self.clock.now())
                continue
            r = waves.started(r, site, previous, self.clock.now())
        for release_id in decision.roll_back:
            # A release that ended meanwhile refuses: its outcome is read on the next look.
            with contextlib.suppress(OverrideRefused):
                self.override(release_id, OverrideKind.ROLLBACK, actor=by, reason=f"rollout {r.id} stopped: {r.reason}")
        for site in decision.revert:
            run = r.run(site)
            assert run.previous is not None
            assert run.revert_id is not None
            previous = self.store.load_release(run.previous).value
            again = replace(previous.spec, release_id=run.revert_id, retry_of=None, redeploy_of=None)
            try:
                self.submit(
                    again,
                    actor=f"rollout {r.id}",
                    source=f"rollout {r.id} stopped: {site} goes back to release {previous.id}",
                    fingerprint=spec_fingerprint(again),
                    submitters=previous.submitters,
                    effective=previous.policy,
                )
            except (Quarantined, ReleaseIdConflict) as exc:
                runs = tuple(
                    replace(x, state="revertFailed", outcome=str(exc)) if x.site == site else x for x in r.runs
                )
                r = replace(r, runs=runs)
        return r

    def _previous_good(self, site_key: str, release_id: str) -> str | None:
        """The release the site ran before ``release_id``: its last good one — or, when that is
        ``release_id`` itself (a rollout saved after a crash that had created it), the newest other
        release that succeeded there."""
        last_good = self.store.load_site(site_key).value.last_good
        if last_good is None or last_good.release_id != release_id:
            return last_good.release_id if last_good else None
        for loaded in self.store.list_site_releases(site_key):  # newest first
            r = loaded.value
            if r.id != release_id and r.phase is Phase.SUCCEEDED:
                return r.id
        return None

    def reconcile_rollouts(self) -> list[str]:
        """Every rollout not yet final (the timer's tick). Returns those it looked at."""
        looked: list[str] = []
        for rollout in self.store.list_rollouts(active=True):
            if rollout.next_check_at is not None and rollout.next_check_at > self.clock.now():
                continue
            try:
                self.reconcile_rollout(rollout.id)
                looked.append(rollout.id)
            except Exception as exc:  # one rollout's trouble never stops the others; the next tick retries
                log.error("rollout %s not reconciled: %s", rollout.id, exc)
        return looked

    def get_rollout(self, rollout_id: str) -> waves.Rollout:
        return self.store.load_rollout(rollout_id).value

    def rollouts(self, *, active: bool | None = None, limit: int = 100) -> list[waves.Rollout]:
        return self.store.list_rollouts(active=active, limit=limit)

    def rollout_children(self, r: waves.Rollout) -> dict[str, Release]:
        """The releases a rollout created so far (its sites' and any reverts), by id."""
        found: dict[str, Release] = {}
        for run in r.runs:
            for rid in (run.release_id, run.revert_id):
                if rid and run.state != "waiting":
                    loaded = self.store.find_release(rid)
                    if loaded is not None:
                        found[rid] = loaded.value
        return found
