"""Intake: release events become releases (once, whatever the number of deliveries), and retries
become new releases with the same plan."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Literal

from shared import telemetry
from shared.authority.proofs import EventProof, ProofRefused
from shared.authority.redaction import redact_event
from shared.domain import lifecycle, policy
from shared.domain.lifecycle import OverrideRefused
from shared.domain.model import (
    Actor,
    Decision,
    EffectivePolicy,
    Override,
    OverrideKind,
    Release,
    ReleaseSpec,
    SiteState,
    Target,
)
from shared.domain.schema import MAX_EVENT_BYTES, SchemaError, parse_release_event, spec_fingerprint
from shared.ports import (
    ConcurrencyConflict,
    DuplicateRelease,
    IdClaim,
    RejectedEvent,
    ReleaseIdConflict,
    ReleaseWrite,
    SiteView,
    TokenUse,
    Versioned,
)
from shared.service.base import IngestResult, ServiceBase, TooManyConflicts, log, one_message_per_release


class NothingToRedeploy(Exception):
    """The site has no release that succeeded, or the redeploy would go to the same site."""


class Quarantined(Exception):
    """The version was rolled back on the site (or its app) and no admin has lifted that."""


class Intake(ServiceBase):
    def ingest(
        self,
        body: bytes,
        *,
        message_id: str | None,
        source: str,
        proof: EventProof | None = None,
        caller: Actor | None = None,
        keep_rejections: bool = True,
    ) -> IngestResult:
        """Turn a release event into a release: valid, from a proven origin, allowed by the policy.
        A refused event is stored with the reason and its app setting values withheld; it is
        never raised.

        Raises ReleaseIdConflict (same id, different plan) and StoreUnavailable (retry later).
        """
        proof = proof or EventProof()
        try:
            spec = parse_release_event(body, default_release_id=message_id)
            origin = self.authority.origin(body, proof, caller)
            admitted = policy.admit(self.authority.policy, spec, origin)
        except SchemaError as exc:
            return self._refuse(body, message_id, source, "invalid", exc.errors, keep_rejections)
        except ProofRefused as exc:
            return self._refuse(body, message_id, source, "unproven", [(exc.field, exc.reason)], keep_rejections)
        except policy.PolicyRefusal as exc:
            return self._refuse(body, message_id, source, "forbidden", exc.errors, keep_rejections)
        fingerprint = spec_fingerprint(spec)
        if origin.issuer is not None:
            reuse = self._spend_token(origin, spec.release_id, fingerprint)
            if reuse is not None:
                return self._refuse(body, message_id, source, "unproven", [reuse], keep_rejections)
        submitters = (origin.actor,) + ((caller,) if caller is not None and caller.id != origin.actor.id else ())
        try:
            return self.submit(
                admitted.spec,
                actor=origin.actor.label,
                source=source,
                fingerprint=fingerprint,
                submitters=submitters,
                effective=admitted.policy,
            )
        except Quarantined as exc:
            return self._refuse(body, message_id, source, "forbidden", [("version", str(exc))], keep_rejections)

    def _spend_token(self, origin: policy.Origin, release_id: str, fingerprint: str) -> tuple[str, str] | None:
        """A CI token proves who sent an event, not which body: each token may carry one release
        plan (its redeliveries included). Returns the refusal when it already carried another."""
        jti = origin.claims.get("jti")
        if not jti:
            return ("identity token", "has no jti claim, so its reuse could not be detected")
        held = self.store.claim_token(TokenUse(f"{origin.issuer}|{jti}", release_id, fingerprint, self.clock.now()))
        if (held.release_id, held.fingerprint) != (release_id, fingerprint):
            return (
                "identity token",
                f"was already used for another event (release {held.release_id}): send a fresh token with each event",
            )
        return None

    def _refuse(
        self,
        body: bytes,
        message_id: str | None,
        source: str,
        refusal: Literal["invalid", "unproven", "forbidden"],
        errors: list[tuple[str, str]],
        keep: bool,
    ) -> IngestResult:
        reason = "; ".join(f"{f or '(event)'}: {m}" for f, m in errors)
        rejection_id = None
        if keep:
            rejection_id = self.store.save_rejected(
                RejectedEvent(
                    received_at=self.clock.now(),
                    source=source,
                    message_id=message_id,
                    reason=reason,
                    errors=errors,
                    body=redact_event(body, max_bytes=MAX_EVENT_BYTES),
                    details={
                        "refusal": refusal,
                        "receivedBytes": len(body),
                        "receivedSha256": hashlib.sha256(body).hexdigest(),
                    },
                )
            )
        log.warning("refused release event %s from %s (%s): %s", message_id, source, refusal, reason[:500])
        return IngestResult("rejected", errors=errors, reason=reason, rejection_id=rejection_id, refusal=refusal)

    @one_message_per_release
    def submit(
        self,
        spec: ReleaseSpec,
        *,
        actor: str,
        source: str,
        fingerprint: str | None = None,
        submitters: tuple[Actor, ...] = (),
        effective: EffectivePolicy | None = None,
    ) -> IngestResult:
        """Create the release (once, whatever the number of deliveries). ``fingerprint`` names the
        event's plan (as sent, before the policy applied its approvals)."""
        fingerprint = fingerprint or spec_fingerprint(spec)
        claim = self.store.claim_release_id(
            IdClaim(spec.release_id, spec.target.site_key, fingerprint, self.clock.now())
        )
        if claim.fingerprint != fingerprint or claim.site_key != spec.target.site_key:
            raise ReleaseIdConflict(spec.release_id, claim.site_key)
        # The claim fixes the creation time, so every delivery of the event writes the same row.
        created = lifecycle.new_release(
            spec, claim.created_at, actor=actor, source=source, submitters=submitters, policy=effective
        )
        for _ in range(self.conflict_retries):
            view = self.store.load_admission(spec.target.site_key, spec.release_id, claim.created_at)
            if view.existing is not None:
                return IngestResult("duplicate", view.existing.value)
            refusal = self._quarantine_refusal(spec, effective, view.site.value)
            if refusal is not None:
                raise Quarantined(refusal)
            placed = self._place(created, fingerprint, self.clock.now(), view=view)
            if placed is None:
                continue
            with telemetry.working_on(spec.release_id):
                telemetry.describe(placed)
                log.info("release %s created for %s", spec.release_id, spec.target.site_key)
            # Start at once; do not wait for the timer (or a worker).
            started = self._reconcile(spec.release_id, force=True, depth=1, ref=self.store.due_ref(placed))
            release = started.release or self.store.load_release(spec.release_id).value
            return IngestResult("created", release)
        raise TooManyConflicts(f"could not create release {spec.release_id}: the site kept changing")

    @one_message_per_release
    def redeploy(self, site_key: str, to: Target, *, actor: Actor, reason: str) -> IngestResult:
        """Run a site's last good release on another site (disaster recovery), through the same
        pipeline, checks and analysis, admitted by the policy for that site with ``actor`` as its
        origin; linked both ways. Raises NothingToRedeploy; a refusal is an IngestResult."""
        if to.site_key == site_key:
            raise NothingToRedeploy("a redeploy goes to another site")
        last_good = self.store.load_site(site_key).value.last_good
        if last_good is None:
            raise NothingToRedeploy(f"site {site_key} has no release that succeeded to redeploy")
        source = self.store.load_release(last_good.release_id).value
        new_id = lifecycle.redeploy_release_id(source.id, to.site)
        spec = replace(source.spec, release_id=new_id, target=to, retry_of=None, redeploy_of=source.id)
        try:
            admitted = policy.admit(self.authority.policy, spec, policy.Origin(actor=actor))
        except policy.PolicyRefusal as exc:
            why = "; ".join(f"{f or '(event)'}: {m}" for f, m in exc.errors)
            return IngestResult("rejected", errors=exc.errors, reason=why, refusal="forbidden")
        refusal = self._quarantine_refusal(admitted.spec, admitted.policy, self.store.load_site(to.site_key).value)
        if refusal is not None:  # refused before the link is written: no link to a release that never was
            return IngestResult("rejected", errors=[("version", refusal)], reason=refusal, refusal="forbidden")
        for _ in range(self.conflict_retries):
            loaded = self.store.load_release(source.id)
            link = lifecycle.plan_redeploy(loaded.value, new_id, to, actor, reason, self.clock.now())
            try:
                self._commit(loaded, link)
                break
            except ConcurrencyConflict:
                continue
        else:
            raise TooManyConflicts(f"release {source.id} kept changing; try again")
        try:
            return self.submit(
                admitted.spec,
                actor=actor.label,
                source=f"redeploy of {source.id} from {source.spec.target.site}: {reason}",
                fingerprint=spec_fingerprint(spec),
                submitters=(actor,),
                effective=admitted.policy,
            )
        except Quarantined as exc:
            return IngestResult("rejected", errors=[("version", str(exc))], reason=str(exc), refusal="forbidden")

    def _quarantine_refusal(self, spec: ReleaseSpec, effective: EffectivePolicy | None, site: SiteState) -> str | None:
        """A version rolled back on this site (or, by policy, on any site of its rule) is refused."""
        scope = effective.quarantine if effective is not None else "site"
        rule = effective.rule if effective is not None else ""
        sites = [site]
        if scope == "app":
            sites += [s for s in self.store.list_sites() if s.site_key != site.site_key]
        return lifecycle.quarantine_refusal(spec.version, rule, scope, sites)

    def _place(
        self,
        created: Decision,
        fingerprint: str,
        now: datetime,
        *,
        also: Sequence[ReleaseWrite] = (),
        view: SiteView | None = None,
    ) -> Release | None:
        """Insert a new release on its site (superseding or queueing behind what is there) in one
        transaction with ``also``; its id is claimed already. Returns it as saved; None when
        another writer got there first."""
        new = created.release
        if view is None:
            view = self.store.load_admission(new.site_key, new.id, new.created_at)
        site = view.site
        active = view.others.get(site.value.active) if site.value.active else None
        queued = view.others.get(site.value.queued) if site.value.queued else None
        admission = lifecycle.admit(
            site.value, created, active.value if active else None, queued.value if queued else None, now
        )
        etags = {r.value.id: r.etag for r in (active, queued) if r is not None}
        decisions = [self._announce(d) for d in admission.decisions]
        writes = [
            ReleaseWrite(d.release, None, d.audit, fingerprint, claimed=True)
            if d.release.id == new.id
            else ReleaseWrite(d.release, etags[d.release.id], d.audit)
            for d in decisions
        ]
        try:
            self.store.commit(new.site_key, [*writes, *also], Versioned(admission.site, site.etag))
        except (DuplicateRelease, ConcurrencyConflict):
            return None
        placed = next(d.release for d in decisions if d.release.id == new.id)
        for w in [*writes, *also]:
            self._follow_up(w.release)
        return placed

    @one_message_per_release
    def retry(self, release_id: str, *, actor: Actor, reason: str) -> Release:
        """A new release with the same plan, linked to the old one (which stays final). Its id is the
        first free ``-retryN`` claimed for this site and plan."""
        for _ in range(self.conflict_retries):
            old = self.store.load_release(release_id)
            now = self.clock.now()
            refusal = lifecycle.override_refusal(old.value, OverrideKind.RETRY)
            if refusal is not None:
                raise OverrideRefused(refusal)
            new_id, claimed_at, fingerprint = self._claim_retry_id(old.value, now)
            override = Override(OverrideKind.RETRY, actor, reason)
            created, old_decision = lifecycle.plan_retry(old.value, override, new_id, claimed_at)
            if old_decision.release.site_key != created.release.site_key:
                raise AssertionError("a retry stays on its site")
            also = [ReleaseWrite(old_decision.release, old.etag, old_decision.audit)]
            if self._place(created, fingerprint, now, also=also) is None:
                continue
            self._start_next(new_id, 0)
            return self.store.load_release(new_id).value
        raise TooManyConflicts(f"could not retry release {release_id}; try again")

    def _claim_retry_id(self, old: Release, now: datetime) -> tuple[str, datetime, str]:
        for candidate in lifecycle.retry_release_ids(old.id):
            spec = replace(old.spec, release_id=candidate, retry_of=old.id)
            fingerprint = spec_fingerprint(spec)
            claim = self.store.claim_release_id(IdClaim(candidate, old.site_key, fingerprint, now))
            ours = claim.site_key == old.site_key and claim.fingerprint == fingerprint
            if ours and self.store.find_release(candidate) is None:
                return candidate, claim.created_at, fingerprint
            # Taken (by another plan or site, or already created): try the next number.
        raise OverrideRefused(f"release {old.id} has been retried too many times; submit a new release instead")
