"""The service layer: load -> observe -> decide -> apply effects -> save, and nothing else.

Every write is conditional on the ETag it read. On a conflict the whole cycle runs again from a
fresh read, a bounded number of times. Platform failures are classified: transient ones leave the
state as it was (counted in the audit and retried on a later tick); terminal ones take the release
down its rollback path.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from shared.domain import machine
from shared.domain.model import (
    AuditEntry,
    BeginSwap,
    Decision,
    DeployToSlot,
    Observation,
    Override,
    OverrideKind,
    Phase,
    RaiseAlert,
    Release,
    ReleaseSpec,
    RestoreStaging,
    SetWeight,
    SiteState,
)
from shared.domain.schema import SchemaError, parse_release_event, spec_fingerprint
from shared.ports import (
    Analyzer,
    Clock,
    ConcurrencyConflict,
    DuplicateRelease,
    IdClaim,
    Notifier,
    Page,
    PlatformError,
    RejectedEvent,
    ReleaseIdConflict,
    ReleaseStore,
    ReleaseSummary,
    ReleaseWrite,
    SlotPlatform,
    StoredAudit,
    TerminalPlatformError,
    TransientPlatformError,
    Validator,
    Versioned,
)

log = logging.getLogger("release_controller.service")

CONFLICT_RETRIES = 6
ABANDONED_INDEX_AFTER = timedelta(minutes=15)


class TooManyConflicts(ConcurrencyConflict):
    """Other writers kept winning; the caller should try again a little later."""


@dataclass(frozen=True)
class IngestResult:
    outcome: Literal["created", "duplicate", "rejected"]
    release: Release | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)
    reason: str = ""
    rejection_id: str | None = None


@dataclass(frozen=True)
class ReconcileResult:
    release_id: str
    outcome: Literal["advanced", "unchanged", "not-due", "final", "transient", "missing"]
    phase: Phase | None = None


@dataclass
class TickReport:
    reconciled: list[ReconcileResult] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    skipped_for_budget: list[str] = field(default_factory=list)


_SWAP_PHASES = frozenset({Phase.PROMOTING, Phase.ROLLING_BACK})


def _same_state(before: Release, after: Release) -> bool:
    """Nothing worth a write: equal but for the timestamps of this tick."""
    if (before.next_check_at is None) != (after.next_check_at is None):
        return False
    return replace(before, updated_at=None, next_check_at=None) == replace(after, updated_at=None, next_check_at=None)


class ReleaseService:
    def __init__(
        self,
        store: ReleaseStore,
        platform: SlotPlatform,
        validator: Validator,
        analyzer: Analyzer,
        notifier: Notifier,
        clock: Clock,
        *,
        conflict_retries: int = CONFLICT_RETRIES,
    ):
        self.store = store
        self.platform = platform
        self.validator = validator
        self.analyzer = analyzer
        self.notifier = notifier
        self.clock = clock
        self.conflict_retries = conflict_retries

    # -- ingestion -------------------------------------------------------------------------------

    def ingest(
        self,
        body: bytes,
        *,
        message_id: str | None,
        source: str,
        actor: str = "ci",
        keep_rejections: bool = True,
    ) -> IngestResult:
        """Turn a release event into a release. Invalid events are stored with the reason, never raised.

        Raises ReleaseIdConflict (same id, different plan) and StoreUnavailable (retry later).
        """
        try:
            spec = parse_release_event(body, default_release_id=message_id)
        except SchemaError as exc:
            rejection_id = None
            if keep_rejections:
                rejection_id = self.store.save_rejected(
                    RejectedEvent(
                        received_at=self.clock.now(),
                        source=source,
                        message_id=message_id,
                        reason=str(exc),
                        errors=exc.errors,
                        body=body,
                    )
                )
            log.warning("rejected release event %s from %s: %s", message_id, source, exc)
            return IngestResult("rejected", errors=exc.errors, reason=str(exc), rejection_id=rejection_id)
        return self.submit(spec, actor=actor, source=source)

    def submit(self, spec: ReleaseSpec, *, actor: str, source: str) -> IngestResult:
        fingerprint = spec_fingerprint(spec)
        claim = self.store.claim_release_id(
            IdClaim(spec.release_id, spec.target.site_key, fingerprint, self.clock.now())
        )
        if claim.fingerprint != fingerprint or claim.site_key != spec.target.site_key:
            raise ReleaseIdConflict(spec.release_id, claim.site_key)
        # The claim fixes the creation time, so every delivery of the event writes the same row.
        created = machine.new_release(spec, claim.created_at, actor=actor, source=source)
        for _ in range(self.conflict_retries):
            existing = self.store.find_release(spec.release_id)
            if existing is not None:
                return IngestResult("duplicate", existing.value)
            admission, writes, site = self._admit(created, fingerprint, self.clock.now())
            try:
                self.store.commit(spec.target.site_key, writes, site)
            except DuplicateRelease:
                continue  # someone else created it: the next loop returns it as a duplicate
            except ConcurrencyConflict:
                continue
            for d in admission.decisions[1:]:
                self._send_alerts(d)
            log.info("release %s created for %s", spec.release_id, spec.target.site_key)
            self.reconcile(spec.release_id, force=True)  # start at once; do not wait for the timer
            return IngestResult("created", self.store.load_release(spec.release_id).value)
        raise TooManyConflicts(f"could not create release {spec.release_id}: the site kept changing")

    def _load_optional(self, release_id: str | None) -> Versioned[Release] | None:
        return self.store.find_release(release_id) if release_id else None

    def _admit(
        self, created: Decision, fingerprint: str, now: datetime
    ) -> tuple[machine.Admission, list[ReleaseWrite], Versioned[SiteState]]:
        """Place a new release on its site: the rows to write (the new release inserted; any release
        it supersedes updated If-Match) and the site row at the ETag it was read at."""
        new_id = created.release.id
        site = self.store.load_site(created.release.site_key)
        active = self._load_optional(site.value.active)
        queued = self._load_optional(site.value.queued)
        admission = machine.admit(
            site.value, created, active.value if active else None, queued.value if queued else None, now
        )
        etags = {r.value.id: r.etag for r in (active, queued) if r is not None}
        writes = [
            ReleaseWrite(d.release, None, d.audit, fingerprint)
            if d.release.id == new_id
            else ReleaseWrite(d.release, etags[d.release.id], d.audit)
            for d in admission.decisions
        ]
        return admission, writes, Versioned(admission.site, site.etag)

    # -- reconciliation --------------------------------------------------------------------------

    def reconcile(self, release_id: str, *, force: bool = False) -> ReconcileResult:
        """One tick of one release. Effects are applied before the save; a crash in between is
        repaired by the next tick, which observes the slots and converges."""
        for _ in range(self.conflict_retries):
            loaded = self.store.find_release(release_id)
            if loaded is None:
                return ReconcileResult(release_id, "missing")
            release = loaded.value
            if release.is_final:
                self.store.forget_active(release_id)
                return ReconcileResult(release_id, "final", release.phase)
            now = self.clock.now()
            if not force and (release.next_check_at is None or release.next_check_at > now):
                return ReconcileResult(release_id, "not-due", release.phase)
            site = self.store.load_site(release.site_key)
            decision, outcome = self._decide_and_apply(release, site.value, now)
            if outcome == "unchanged" and _same_state(release, decision.release):
                return ReconcileResult(release_id, "unchanged", release.phase)
            new_site = machine.site_after(site.value, decision.release)
            site_write = Versioned(new_site, site.etag) if new_site != site.value else None
            try:
                self.store.commit(
                    release.site_key, [ReleaseWrite(decision.release, loaded.etag, decision.audit)], site_write
                )
            except ConcurrencyConflict:
                log.info("release %s changed while reconciling; deciding again", release_id)
                continue
            self._send_alerts(decision)
            if site_write is not None and new_site.active and new_site.active != release_id:
                self.reconcile(new_site.active, force=True)  # the next release in the queue starts now
            if decision.release.phase in _SWAP_PHASES and release.phase is not decision.release.phase:
                # A swap only starts from a saved phase; now that it is saved, go on at once.
                return self.reconcile(release_id, force=True)
            return ReconcileResult(release_id, outcome, decision.release.phase)
        raise TooManyConflicts(f"release {release_id} kept changing while reconciling")

    def _decide_and_apply(
        self, release: Release, site: SiteState, now: datetime
    ) -> tuple[Decision, Literal["advanced", "unchanged", "transient"]]:
        decision: Decision | None = None
        try:
            observation = self._observe(release, site, now)
            decision = machine.decide(release, observation, now)
            decision = self._apply(decision, now)
        except TransientPlatformError as exc:
            log.warning("release %s: transient platform failure: %s", release.id, exc.message)
            return machine.transient_failure(release, exc.message, now), "transient"
        except TerminalPlatformError as exc:
            log.error("release %s: terminal platform failure: %s", release.id, exc.message)
            # Take the rollback path from where the decision had got to, keeping what it recorded.
            attempted = decision if decision is not None else Decision(release)
            failed = machine.terminal_failure(attempted.release, exc.message, now)
            return replace(failed, audit=attempted.audit + failed.audit), "advanced"
        changed = decision.release.phase is not release.phase or bool(decision.effects) or bool(decision.audit)
        return decision, "advanced" if changed else "unchanged"

    def _observe(self, release: Release, site: SiteState, now: datetime) -> Observation:
        need = machine.needs(release, site)
        if not need.slots:
            return Observation(site=site)
        token = release.swap.token if release.swap else None
        slots = self.platform.observe(release.spec.target, swap_token=token, probe_staging=need.readiness)
        checks = None
        if need.checks and slots.staging_release == release.id and slots.staging_host:
            checks = self.validator.run_checks(slots.staging_host, release.spec.validation.checks)
        measurements = None
        if need.analysis and need.window_start is not None:
            measurements = self.analyzer.measure(
                release, slots, release.spec.analysis.providers, need.window_start, now
            )
        gates = self.analyzer.ask_gates(release, slots, need.gate) if need.gate is not None else None
        return Observation(site=site, slots=slots, checks=checks, measurements=measurements, gates=gates)

    def _apply(self, decision: Decision, now: datetime) -> Decision:
        target = decision.release.spec.target
        for effect in decision.effects:
            if isinstance(effect, DeployToSlot):
                self.platform.deploy(
                    target,
                    release_id=effect.release_id,
                    version=effect.version,
                    artifact=effect.artifact,
                    app_settings=effect.app_settings,
                )
            elif isinstance(effect, SetWeight):
                self.platform.set_weight(target, effect.weight)
            elif isinstance(effect, BeginSwap):
                token = self.platform.begin_swap(target)
                decision = machine.record_swap_started(decision, token)
            elif isinstance(effect, RestoreStaging):
                decision = self._restore_staging(decision, effect, now)
        return decision

    def _restore_staging(self, decision: Decision, effect: RestoreStaging, now: datetime) -> Decision:
        """Best effort: the rollback itself is done; a staging slot left on the bad build is reported."""
        target = decision.release.spec.target
        good = effect.last_good
        try:
            self.platform.restore_staging(target, good)
            message = (
                f"slot {target.slot} redeployed with the last good release {good.release_id} (version {good.version})"
            )
            action = "staging.restored"
        except TransientPlatformError:
            raise
        except PlatformError as exc:
            message = (
                f"could not redeploy slot {target.slot} with the last good release {good.release_id}: {exc.message}; "
                "visitors pinned to the slot may still reach the rolled-back version"
            )
            action = "staging.restoreFailed"
            decision = replace(decision, effects=(*decision.effects, RaiseAlert("warning", message)))
        r = decision.release
        entry = AuditEntry(now, "controller", action, message, r.phase, r.phase, r.weight, {})
        return replace(decision, audit=(*decision.audit, entry))

    def _send_alerts(self, decision: Decision) -> None:
        for effect in decision.effects:
            if isinstance(effect, RaiseAlert):
                self.notifier.notify(decision.release, effect.severity, effect.message)

    # -- the timer -------------------------------------------------------------------------------

    def reconcile_due(self, *, budget_seconds: float, concurrency: int) -> TickReport:
        """Advance every due release, at most ``concurrency`` at once, starting none after the budget.

        One release failing does not stop the others: its error is reported and it is retried on the
        next tick with its state unchanged.
        """
        report = TickReport()
        deadline = time.monotonic() + budget_seconds
        refs = self.store.list_active()
        indexed_at = {ref.release_id: ref.indexed_at for ref in refs}

        def run(release_id: str) -> ReconcileResult | None:
            if time.monotonic() >= deadline:
                return None
            return self.reconcile(release_id)

        with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="reconcile") as pool:
            futures = {pool.submit(run, ref.release_id): ref.release_id for ref in refs}
            for future in as_completed(futures):
                release_id = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # isolate releases from each other; the error is reported
                    log.exception("reconciling release %s failed; it will be retried next tick", release_id)
                    report.errors.append((release_id, f"{type(exc).__name__}: {exc}"))
                    continue
                if result is None:
                    report.skipped_for_budget.append(release_id)
                    continue
                report.reconciled.append(result)
                if result.outcome == "missing" and self._abandoned(indexed_at.get(release_id)):
                    # Indexed, but its creation never committed (and its event will be redelivered).
                    log.warning("forgetting index entry of release %s: it was never created", release_id)
                    self.store.forget_active(release_id)
        return report

    def _abandoned(self, indexed_at: datetime | None) -> bool:
        """An index entry with no release row, old enough that no creation can still be under way."""
        return indexed_at is not None and self.clock.now() - indexed_at > ABANDONED_INDEX_AFTER

    # -- overrides -------------------------------------------------------------------------------

    def override(self, release_id: str, kind: OverrideKind, *, actor: str, reason: str) -> Release:
        """Record a person's instruction. Raises ReleaseNotFound, OverrideRefused, TooManyConflicts."""
        if kind is OverrideKind.RETRY:
            return self.retry(release_id, actor=actor, reason=reason)
        for _ in range(self.conflict_retries):
            loaded = self.store.load_release(release_id)
            decision = machine.apply_override(loaded.value, Override(kind, actor, reason), self.clock.now())
            site = self.store.load_site(loaded.value.site_key)
            new_site = machine.site_after(site.value, decision.release)
            site_write = Versioned(new_site, site.etag) if new_site != site.value else None
            try:
                self.store.commit(
                    loaded.value.site_key, [ReleaseWrite(decision.release, loaded.etag, decision.audit)], site_write
                )
            except ConcurrencyConflict:
                continue  # re-read: the override may now be refused, or apply to the newer state
            log.info("release %s: %s by %s", release_id, kind.value, actor)
            if site_write is not None and new_site.active and new_site.active != release_id:
                self.reconcile(new_site.active, force=True)
            return decision.release
        raise TooManyConflicts(f"release {release_id} kept changing; try again")

    def retry(self, release_id: str, *, actor: str, reason: str) -> Release:
        """A new release with the same plan, linked to the old one (which stays final)."""
        for _ in range(self.conflict_retries):
            old = self.store.load_release(release_id)
            now = self.clock.now()
            created, old_decision = machine.plan_retry(old.value, Override(OverrideKind.RETRY, actor, reason), now)
            spec = created.release.spec
            fingerprint = spec_fingerprint(spec)
            claim = self.store.claim_release_id(IdClaim(spec.release_id, spec.target.site_key, fingerprint, now))
            created = machine.new_release(
                spec, claim.created_at, actor=actor, source=f"retry of {release_id}: {reason}"
            )
            _, writes, site = self._admit(created, fingerprint, now)
            writes.append(ReleaseWrite(old_decision.release, old.etag, old_decision.audit))
            try:
                self.store.commit(spec.target.site_key, writes, site)
            except (ConcurrencyConflict, DuplicateRelease):
                continue
            self.reconcile(spec.release_id, force=True)
            return self.store.load_release(spec.release_id).value
        raise TooManyConflicts(f"could not retry release {release_id}; try again")

    # -- queries ---------------------------------------------------------------------------------

    def get(self, release_id: str) -> Release:
        return self.store.load_release(release_id).value

    def audit(self, release_id: str) -> list[StoredAudit]:
        return self.store.list_audit(release_id)

    def list(
        self,
        *,
        site_key: str | None = None,
        site: str | None = None,
        phase: Phase | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[ReleaseSummary]:
        return self.store.list_releases(site_key=site_key, site=site, phase=phase, limit=limit, cursor=cursor)
