"""Reconciling one release: load -> observe -> decide -> apply -> save, then what follows the save.

Idempotent effects (deploy, routing weight, restoring the slot) are applied before the save: a
crash in between is repaired by the next tick, which observes the slots and converges. The swap is
not idempotent: the decision claims it, the claim is saved, and only then is the swap started and
its continuation token recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from datetime import datetime
from typing import Literal

from shared import telemetry
from shared.domain import lifecycle
from shared.domain.model import (
    CONTROLLER,
    AuditEntry,
    BeginSwap,
    Decision,
    DeployToSlot,
    Observation,
    Release,
    RestoreStaging,
    SetWeight,
    SiteState,
)
from shared.ports import (
    RECONCILE_DEADLINE,
    BudgetSpent,
    ConcurrencyConflict,
    DueRef,
    PlatformError,
    TerminalPlatformError,
    TransientPlatformError,
    Versioned,
)
from shared.service.base import (
    MAX_FOLLOW_UPS,
    ReconcileResult,
    ServiceBase,
    TickReport,
    TooManyConflicts,
    log,
    one_message_per_release,
)


def _same_state(before: Release, after: Release) -> bool:
    """Nothing worth a write: equal but for the timestamps of this tick."""
    if (before.next_check_at is None) != (after.next_check_at is None):
        return False
    return replace(before, updated_at=None, next_check_at=None) == replace(after, updated_at=None, next_check_at=None)


class Reconciler(ServiceBase):
    @one_message_per_release
    def reconcile(self, release_id: str, *, force: bool = False, ref: DueRef | None = None) -> ReconcileResult:
        """One tick of one release (``force``: even if it is not due yet). ``ref``, from the due
        index or a work message, lets the release and its site row load in one round trip."""
        return self._reconcile(release_id, force=force, depth=0, ref=ref)

    def _start_next(self, release_id: str, depth: int) -> None:
        self._reconcile(release_id, force=True, depth=depth)

    def _load(
        self, release_id: str, ref: DueRef | None
    ) -> tuple[Versioned[Release], Versioned[SiteState] | None] | None:
        if ref is not None and ref.release_id == release_id:
            return self.store.load_due(ref)
        found = self.store.find_release(release_id)
        return (found, None) if found is not None else None

    def _reconcile(
        self,
        release_id: str,
        *,
        force: bool,
        depth: int,
        ref: DueRef | None = None,
        read: tuple[Versioned[Release], Versioned[SiteState] | None] | None = None,
    ) -> ReconcileResult:
        """``read``: the release and its site as this worker just saved them (no read first)."""
        with telemetry.reconcile_span(release_id) as span:
            result = self._reconcile_once(release_id, force=force, depth=depth, ref=ref, read=read)
            span.outcome = result.outcome
            return result

    def _reconcile_once(
        self,
        release_id: str,
        *,
        force: bool,
        depth: int,
        ref: DueRef | None,
        read: tuple[Versioned[Release], Versioned[SiteState] | None] | None,
    ) -> ReconcileResult:
        for _ in range(self.conflict_retries):
            got = read if read is not None else self._load(release_id, ref)
            read = None
            if got is None:
                return ReconcileResult(release_id, "missing")
            loaded, site = got
            if loaded.value.outbox:
                loaded = self._deliver_alerts(loaded)
                site = None  # the alerts' save may have changed the site row
            release = loaded.value
            telemetry.describe(release)
            if release.frees_site:
                return ReconcileResult(release_id, "final", release.phase, release)
            now = self.clock.now()
            due_at = lifecycle.attention_at(release)
            if not force and (due_at is None or due_at > now):
                return ReconcileResult(release_id, "not-due", release.phase, release)
            if site is None:
                site = self.store.load_site(release.site_key)
            decision, outcome = self._decide_and_apply(release, site.value, now)
            if outcome == "unchanged" and _same_state(release, decision.release):
                if release.next_check_at is not None and release.next_check_at > now:
                    return ReconcileResult(release_id, "unchanged", release.phase, release)  # looked at early
                # Nothing happened but time: save only when it is next due.
                decision = Decision(replace(release, next_check_at=decision.release.next_check_at))
            try:
                committed, handed_to = self._commit(loaded, decision, site)
            except ConcurrencyConflict:
                log.info("release %s changed while reconciling; deciding again", release_id)
                continue
            swaps = [e for e in decision.effects if isinstance(e, BeginSwap)]
            if swaps:
                committed = self._begin_swap(committed, now, ref)
            committed = self._settle(committed, handed_to, depth)
            if decision.again and depth < MAX_FOLLOW_UPS:
                # The decision stopped short of what its saved state now allows: go on at once,
                # from what was just saved (the ETag still guards it) unless the site row changed.
                same_site = lifecycle.site_after(site.value, decision.release) == site.value
                again = (committed, site) if same_site else None
                return self._reconcile(release_id, force=True, depth=depth + 1, ref=ref, read=again)
            return ReconcileResult(release_id, outcome, committed.value.phase, committed.value)
        raise TooManyConflicts(f"release {release_id} kept changing while reconciling")

    def _decide_and_apply(
        self, release: Release, site: SiteState, now: datetime
    ) -> tuple[Decision, Literal["advanced", "unchanged", "transient"]]:
        decision: Decision | None = None
        try:
            observation = self._observe(release, site, now)
            decision = lifecycle.decide(release, observation, now)
            decision = self._apply(decision, now)
        except TransientPlatformError as exc:
            log.warning("release %s: transient platform failure: %s", release.id, exc.message)
            failed = lifecycle.transient_failure(release, exc.message, now, retry_after=exc.retry_after)
            return failed, "transient"
        except TerminalPlatformError as exc:
            log.error("release %s: terminal platform failure: %s", release.id, exc.message)
            # Take the rollback path from where the decision had got to, keeping what it recorded;
            # a swap it claimed was never started.
            attempted = decision if decision is not None else Decision(release)
            partial = replace(attempted.release, swap=release.swap)
            failed = lifecycle.terminal_failure(partial, exc.message, now)
            return replace(failed, audit=attempted.audit + failed.audit), "advanced"
        changed = (
            decision.release.phase is not release.phase
            or bool(decision.effects)
            or bool(decision.audit)
            or decision.again
        )
        return decision, "advanced" if changed else "unchanged"

    def _observe(self, release: Release, site: SiteState, now: datetime) -> Observation:
        need = lifecycle.needs(release, site)
        stop = self.stop_reason()
        if not need.slots:
            return Observation(site=site, stop=stop)
        budget = RECONCILE_DEADLINE.set(time.monotonic() + self.observe_budget_seconds)
        try:
            token = release.swap.token if release.swap else None
            slots = self.platform.observe(release.spec.target, swap_token=token, probe_staging=need.readiness)
            checks = None
            if need.checks and slots.staging_release == release.id and slots.staging_host:
                try:
                    checks = self.validator.run_checks(slots.staging_host, release.spec.validation.checks)
                except BudgetSpent:
                    checks = None  # not all ran: judged on the next tick, never on part of them
            measurements = None
            if need.analysis and need.window_start is not None:
                try:
                    measurements = self.analyzer.measure(
                        release, slots, release.spec.analysis.providers, need.window_start, now
                    )
                except BudgetSpent:
                    measurements = None
            gates = self.analyzer.ask_gates(release, slots, need.gate) if need.gate is not None else None
        except BudgetSpent as exc:
            raise TransientPlatformError(f"the reconcile ran out of time observing the slots ({exc})") from None
        finally:
            RECONCILE_DEADLINE.reset(budget)
        return Observation(site=site, slots=slots, checks=checks, measurements=measurements, gates=gates, stop=stop)

    def _apply(self, decision: Decision, now: datetime) -> Decision:
        """The idempotent effects, before the save. BeginSwap waits for the save (``_begin_swap``)."""
        target = decision.release.spec.target
        for effect in decision.effects:
            if isinstance(effect, DeployToSlot):
                self.platform.deploy(
                    target,
                    release_id=effect.release_id,
                    version=effect.version,
                    artifact=effect.artifact,
                    app_settings=effect.app_settings,
                    warmup=effect.warmup,
                )
            elif isinstance(effect, SetWeight):
                self.platform.set_weight(target, effect.weight)
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
            release = decision.release
        except TransientPlatformError:
            raise
        except PlatformError as exc:
            message = (
                f"could not redeploy slot {target.slot} with the last good release {good.release_id}: {exc.message}; "
                "visitors pinned to the slot may still reach the rolled-back version"
            )
            action = "staging.restoreFailed"
            release = lifecycle.with_alert(decision.release, "warning", message, now)
        entry = AuditEntry(now, CONTROLLER, action, message, release.phase, release.phase, release.weight, {})
        return replace(decision, release=release, audit=(*decision.audit, entry))

    def _begin_swap(self, committed: Versioned[Release], now: datetime, ref: DueRef | None) -> Versioned[Release]:
        """Start the swap the saved state claims, and record how to follow it."""
        release = committed.value
        if release.swap is None or release.swap.token is not None:
            raise AssertionError("_begin_swap needs a saved claim without a token")
        claimed_at = release.swap.claimed_at
        # Last look before the one action that cannot be repeated: a person may have rolled the
        # release back since the claim was saved.
        looked = self._load(release.id, ref)
        if looked is None or looked[0].value.swap != release.swap:
            return committed
        current, site = looked
        read = (current, site) if site is not None else None
        if lifecycle.swap_withdrawn(current.value, claimed_at, now) is not None:
            withdrawn = self._update(release.id, lambda r: lifecycle.swap_withdrawn(r, claimed_at, now), read=read)
            return withdrawn if withdrawn is not None else committed
        try:
            token = self.platform.begin_swap(release.spec.target)
        except PlatformError as exc:
            message, transient, answered = exc.message, exc.transient, exc.status is not None
            log.warning("release %s: the swap did not start (%s): %s", release.id, exc.status, message)

            def change(r: Release) -> Decision | None:
                if transient and not answered:  # no answer: it may have started
                    return lifecycle.swap_start_unknown(r, claimed_at, message, now)
                return lifecycle.swap_not_started(r, claimed_at, message, now, terminal=not transient)

        else:

            def change(r: Release) -> Decision | None:
                return lifecycle.swap_started(r, claimed_at, token, now)

        updated = self._update(release.id, change, read=read)
        return updated if updated is not None else committed

    # -- the timer -------------------------------------------------------------------------------

    def reconcile_due(
        self,
        *,
        budget_seconds: float,
        concurrency: int,
        on_worker_start: Callable[[], None] | None = None,
        limit: int | None = None,
    ) -> TickReport:
        """Advance every due release, at most ``concurrency`` at once, starting none after the budget.

        Only due releases are read (the store's due index); a release that is waiting costs
        nothing. One release failing does not stop the others: its error is reported and it is
        retried on the next tick with its state unchanged. ``on_worker_start`` runs first on each
        worker thread (the timer ties the thread to its invocation, so the alerts logged there
        reach its logs).
        """
        report = TickReport()
        deadline = time.monotonic() + budget_seconds
        self.store.ensure_due_index()
        refs = self.store.list_due(self.clock.now(), limit=limit)

        def run(ref: DueRef) -> ReconcileResult | None:
            if time.monotonic() >= deadline:
                return None
            return self.reconcile(ref.release_id, ref=ref)

        with ThreadPoolExecutor(
            max_workers=max(1, concurrency), thread_name_prefix="reconcile", initializer=on_worker_start
        ) as pool:
            futures = {pool.submit(run, ref): ref.release_id for ref in refs}
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
        return report
