"""What every part of the service shares: the ports, the results, and the commit of one decision."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from shared.domain import lifecycle
from shared.domain.model import Actor, Decision, Phase, Release, SiteState
from shared.ports import (
    Analyzer,
    Authority,
    Clock,
    ConcurrencyConflict,
    Notifier,
    ReleaseStore,
    ReleaseWrite,
    SlotPlatform,
    StoreUnavailable,
    Validator,
    Versioned,
)

log = logging.getLogger("release_controller.service")

CONFLICT_RETRIES = 6
# How long one release's observations (slot probes, checks, analysis) may take in one reconcile.
OBSERVE_BUDGET_SECONDS = 60.0
MAX_FOLLOW_UPS = 8


class TooManyConflicts(ConcurrencyConflict):
    """Other writers kept winning; the caller should try again a little later."""


@dataclass(frozen=True)
class IngestResult:
    outcome: Literal["created", "duplicate", "rejected"]
    release: Release | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)
    reason: str = ""
    rejection_id: str | None = None
    # Why it was refused: the event is not valid, its origin is not proven, or the policy says no.
    refusal: Literal["invalid", "unproven", "forbidden"] | None = None


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


class ServiceBase:
    def __init__(
        self,
        store: ReleaseStore,
        platform: SlotPlatform,
        validator: Validator,
        analyzer: Analyzer,
        notifier: Notifier,
        clock: Clock,
        *,
        authority: Authority,
        conflict_retries: int = CONFLICT_RETRIES,
        observe_budget_seconds: float = OBSERVE_BUDGET_SECONDS,
    ):
        self.authority = authority
        self.observe_budget_seconds = observe_budget_seconds
        self.store = store
        self.platform = platform
        self.validator = validator
        self.analyzer = analyzer
        self.notifier = notifier
        self.clock = clock
        self.conflict_retries = conflict_retries

    # -- one decision, committed -----------------------------------------------------------------

    def _commit(
        self, loaded: Versioned[Release], decision: Decision, site: Versioned[SiteState] | None = None
    ) -> tuple[Versioned[Release], str | None]:
        """Write ``decision`` If-Match the ETag ``loaded`` was read at, with the site row (as read
        in ``site``, or now) when the release frees its site. Returns the committed release and the
        site's next active release when the site changed hands. Raises ConcurrencyConflict."""
        release = loaded.value
        site = site if site is not None else self.store.load_site(release.site_key)
        new_site = lifecycle.site_after(site.value, decision.release)
        site_write = Versioned(new_site, site.etag) if new_site != site.value else None
        etags = self.store.commit(
            release.site_key, [ReleaseWrite(decision.release, loaded.etag, decision.audit)], site_write
        )
        committed = replace(decision.release, audit_seq=release.audit_seq + len(decision.audit))
        handed_to = new_site.active if site_write is not None and new_site.active != release.id else None
        return Versioned(committed, etags[release.id]), handed_to

    def _update(self, release_id: str, change: Callable[[Release], Decision | None]) -> Versioned[Release] | None:
        """Apply ``change`` to the stored release and commit, re-reading on conflict. None when
        ``change`` has nothing to do."""
        for _ in range(self.conflict_retries):
            loaded = self.store.load_release(release_id)
            decision = change(loaded.value)
            if decision is None:
                return None
            try:
                committed, handed_to = self._commit(loaded, decision)
            except ConcurrencyConflict:
                continue
            self._settle(committed, handed_to)
            return committed
        raise TooManyConflicts(f"release {release_id} kept changing; try again")

    # -- after a commit --------------------------------------------------------------------------

    def _settle(self, committed: Versioned[Release], handed_to: str | None, depth: int = 0) -> Versioned[Release]:
        """What follows a commit: deliver the alerts it recorded, drop the release from the active
        index once nothing more can happen to it, and start the release that now owns the site."""
        if committed.value.outbox:
            committed = self._deliver_alerts(committed)
        if committed.value.settled:
            self._forget(committed.value.id)
        if handed_to is not None and depth < MAX_FOLLOW_UPS:
            self._start_next(handed_to, depth + 1)
        return committed

    # Provided by the parts of ReleaseService (Intake, Reconciler):

    def retry(self, release_id: str, *, actor: Actor, reason: str) -> Release:
        raise NotImplementedError

    def _start_next(self, release_id: str, depth: int) -> None:
        raise NotImplementedError

    def _forget(self, release_id: str) -> None:
        try:
            self.store.forget_active(release_id)
        except StoreUnavailable as exc:  # the next tick sees it settled and tries again
            log.warning("release %s: could not drop it from the active index yet: %s", release_id, exc)

    def _deliver_alerts(self, loaded: Versioned[Release]) -> Versioned[Release]:
        """Send every pending alert, then record which were sent. One that fails stays pending and
        is sent again on the next reconcile (at least once, maybe twice)."""
        release = loaded.value
        sent: list[int] = []
        for alert in release.outbox:
            try:
                self.notifier.notify(release, alert.severity, alert.message)
            except Exception as exc:  # a notifier failing must never stop a release; it is retried
                log.warning("release %s: alert %d not delivered yet: %s", release.id, alert.seq, exc)
                break
            sent.append(alert.seq)
        current = loaded
        for _ in range(self.conflict_retries):
            decision = lifecycle.alerts_sent(current.value, sent, self.clock.now())
            if decision is None:
                return current
            try:
                committed, _ = self._commit(current, decision)
                return committed
            except ConcurrencyConflict:
                current = self.store.load_release(release.id)
        return current
