"""Overrides and queries: a person's instructions (recorded as intent, never an Azure call) and the
read side of the API."""

from __future__ import annotations

from typing import Any

from shared import telemetry
from shared.domain import lifecycle
from shared.domain.ledger import SiteLedger, ledger
from shared.domain.model import Actor, Override, OverrideKind, Phase, Quarantine, Release, SiteState
from shared.ports import (
    ConcurrencyConflict,
    Page,
    ReleaseSummary,
    ReleaseWrite,
    StoredAudit,
    StoredMeasurement,
    Versioned,
)
from shared.service.base import ServiceBase, TooManyConflicts, log, one_message_per_release

# The ledger reads at most this many releases (newest pages first), in pages of this size.
STATS_LIMIT = 10_000
MAX_STATS_PAGE = 1000


class NotQuarantined(LookupError):
    """Nothing to lift: the version is not quarantined on the site."""


class Overrides(ServiceBase):
    @one_message_per_release
    def override(self, release_id: str, kind: OverrideKind, *, actor: Actor, reason: str) -> Release:
        """Record a person's instruction. Raises ReleaseNotFound, OverrideRefused, TooManyConflicts."""
        if kind is OverrideKind.RETRY:
            return self.retry(release_id, actor=actor, reason=reason)
        for _ in range(self.conflict_retries):
            loaded = self.store.load_release(release_id)
            override = Override(kind, actor, reason)
            decision = lifecycle.apply_override(loaded.value, override, self.clock.now(), stop=self.stop_reason())
            try:
                committed, handed_to = self._commit(loaded, decision)
            except ConcurrencyConflict:
                continue  # re-read: the override may now be refused, or apply to the newer state
            with telemetry.working_on(release_id):
                telemetry.describe(committed.value)
                log.info("release %s: %s by %s", release_id, kind.value, actor.id)
            return self._settle(committed, handed_to).value
        raise TooManyConflicts(f"release {release_id} kept changing; try again")

    def lift_quarantine(self, site_key: str, version: str, *, actor: Actor, reason: str) -> Quarantine:
        """An admin lets a rolled-back version be released on a site again. Raises NotQuarantined,
        TooManyConflicts."""
        for _ in range(self.conflict_retries):
            site = self.store.load_site(site_key)
            entry = site.value.quarantine_of(version)
            if entry is None:
                raise NotQuarantined(f"version {version} is not quarantined on {site_key}")
            loaded = self.store.load_release(entry.release_id)
            decision, new_site = lifecycle.lift_quarantine(
                loaded.value, site.value, version, actor, reason, self.clock.now()
            )
            write = ReleaseWrite(decision.release, loaded.etag, decision.audit)
            try:
                self.store.commit(site_key, [write], Versioned(new_site, site.etag))
            except ConcurrencyConflict:
                continue
            log.info("quarantine of %s on %s lifted by %s", version, site_key, actor.id)
            return entry
        raise TooManyConflicts(f"site {site_key} kept changing; try again")

    def quarantined(self) -> list[tuple[str, Quarantine]]:
        """Every quarantined version, by site key, newest first."""
        entries = [(s.site_key, q) for s in self.store.list_sites() for q in s.quarantined]
        return sorted(entries, key=lambda e: e[1].at, reverse=True)

    # -- queries ---------------------------------------------------------------------------------

    def get(self, release_id: str) -> Release:
        return self.store.load_release(release_id).value

    def site_for_view(self, release: Release) -> SiteState | None:
        """The site row a release's status needs: what a queued release waits behind."""
        return self.store.load_site(release.site_key).value if release.phase is Phase.PENDING else None

    def audit(self, release_id: str) -> list[StoredAudit]:
        return self.store.list_audit(release_id)

    def measurements(self, release_id: str) -> tuple[Release, list[StoredMeasurement]]:
        """The release and the measurements kept for it, newest first."""
        return self.get(release_id), self.store.list_measurements(release_id)

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

    def ledger(self, *, limit: int = STATS_LIMIT) -> list[SiteLedger]:
        """Per site: releases by phase, and the bad ones stopped before they reached more than their
        first step's share (at most ``limit`` releases are read)."""
        return self.overview(limit=limit)[1]

    def overview(self, *, limit: int = STATS_LIMIT) -> tuple[list[ReleaseSummary], list[SiteLedger]]:
        """Every release's summary (at most ``limit``) and the ledger, from one pass over them."""
        summaries: list[ReleaseSummary] = []
        cursor = None
        while len(summaries) < limit:
            page = self.store.list_releases(limit=min(MAX_STATS_PAGE, limit - len(summaries)), cursor=cursor)
            summaries += page.items
            cursor = page.cursor
            if cursor is None:
                break
        phases = [(s.site_key, s.site, s.phase) for s in summaries]
        return summaries, ledger(phases, self.store.list_in_phase(Phase.ROLLED_BACK, limit=limit))

    def rejections(self, day: str, limit: int = 50) -> list[dict[str, Any]]:
        """The events refused on ``day`` (UTC, ``YYYY-MM-DD``), newest first, setting values redacted."""
        return self.store.list_rejected(day, limit)
