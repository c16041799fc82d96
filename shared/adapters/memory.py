"""In-memory implementations of every port: for unit tests of the service layer and for trying the
controller without Azure. They keep the same contracts as the Azure adapters (ETags, atomic
commits, transient/terminal errors) so the service cannot tell the difference."""

from __future__ import annotations

import base64
import copy
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.adapters.codec import (
    audit_from_record,
    audit_to_record,
    iso,
    release_from_records,
    site_from_record,
    site_to_record,
    spec_from_record,
    spec_to_record,
    state_to_record,
)
from shared.adapters.slot_settings import release_settings
from shared.domain.lifecycle.schedule import attention_at
from shared.domain.model import (
    Artifact,
    Check,
    CheckResult,
    GateResult,
    LastGood,
    Measurement,
    Phase,
    ProviderKind,
    ProviderSpec,
    Release,
    ReleaseSpec,
    SiteState,
    SlotObservation,
    SwapState,
    SwapStatus,
    Target,
    VersionStats,
    Warmup,
    WebhookStage,
)
from shared.domain.schema import spec_fingerprint
from shared.ports import (
    ConcurrencyConflict,
    DueRef,
    DuplicateRelease,
    IdClaim,
    Page,
    RejectedEvent,
    ReleaseIdConflict,
    ReleaseNotFound,
    ReleaseSummary,
    ReleaseWrite,
    SiteView,
    StoredAudit,
    StoreUnavailable,
    TerminalPlatformError,
    TokenUse,
    TransientPlatformError,
    Versioned,
)

# ---------------------------------------------------------------------------------------------
# Store
# ---------------------------------------------------------------------------------------------


@dataclass
class _Row:
    data: dict[str, Any]
    etag: str


def _due_order(ref: DueRef) -> tuple[datetime, str]:
    return (ref.due_at, ref.release_id)


class InMemoryReleaseStore:
    """A ReleaseStore in a dict, guarded by one lock, with ETags and all-or-nothing commits."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._etags = itertools.count(1)
        self._claims: dict[str, IdClaim] = {}
        self._tokens: dict[str, TokenUse] = {}
        self._sites: dict[str, _Row] = {}
        self._releases: dict[str, _Row] = {}
        self._audit: dict[str, list[dict[str, Any]]] = {}
        self._due: dict[str, DueRef] = {}
        self._specs: dict[str, ReleaseSpec] = {}
        self.rejected: list[RejectedEvent] = []
        self.unavailable = False

    def _etag(self) -> str:
        return f'W/"{next(self._etags)}"'

    def _check_available(self) -> None:
        if self.unavailable:
            raise StoreUnavailable("the in-memory store was switched off")

    def claim_release_id(self, claim: IdClaim) -> IdClaim:
        with self._lock:
            self._check_available()
            return self._claims.setdefault(claim.release_id, claim)

    def claim_token(self, use: TokenUse) -> TokenUse:
        with self._lock:
            self._check_available()
            return self._tokens.setdefault(use.token, use)

    def load_site(self, site_key: str) -> Versioned[SiteState]:
        with self._lock:
            self._check_available()
            row = self._sites.get(site_key)
            if row is None:
                return Versioned(SiteState(site_key), None)
            return Versioned(site_from_record(site_key, copy.deepcopy(row.data)), row.etag)

    def find_release(self, release_id: str) -> Versioned[Release] | None:
        with self._lock:
            self._check_available()
            row = self._releases.get(release_id)
            if row is None:
                return None
            data = row.data
            # Rows hold what Table Storage would: JSON text. A spec never changes under its id, so
            # its parse is kept (specs are immutable values).
            spec = self._specs.get(release_id)
            if spec is None:
                spec = self._specs[release_id] = spec_from_record(json.loads(data["spec"]))
            release = release_from_records(spec, json.loads(data["state"]))
            return Versioned(replace(release, audit_seq=data["auditSeq"], indexed_due=data.get("dueAt")), row.etag)

    def load_release(self, release_id: str) -> Versioned[Release]:
        found = self.find_release(release_id)
        if found is None:
            raise ReleaseNotFound(release_id)
        return found

    def commit(
        self, site_key: str, writes: list[ReleaseWrite], site: Versioned[SiteState] | None = None
    ) -> dict[str, str]:
        with self._lock:
            self._check_available()
            if site is not None:
                current = self._sites.get(site_key)
                if (current.etag if current else None) != site.etag:
                    raise ConcurrencyConflict(f"site {site_key} changed")
            for w in writes:
                if w.release.site_key != site_key:
                    raise ValueError("every release in a commit must belong to the same site")
                if w.etag is None and not w.claimed:
                    fingerprint = w.fingerprint or spec_fingerprint(w.release.spec)
                    held = self._claims.setdefault(
                        w.release.id, IdClaim(w.release.id, site_key, fingerprint, w.release.created_at)
                    )
                    if held.site_key != site_key or held.fingerprint != fingerprint:
                        raise ReleaseIdConflict(w.release.id, held.site_key)
                current = self._releases.get(w.release.id)
                if w.etag is None and current is not None:
                    raise DuplicateRelease(w.release.id)
                if w.etag is not None and (current is None or current.etag != w.etag):
                    raise ConcurrencyConflict(f"release {w.release.id} changed")
            etags: dict[str, str] = {}
            for w in writes:
                etag = self._etag()
                self._releases[w.release.id] = _Row(
                    {
                        "spec": json.dumps(spec_to_record(w.release.spec)),
                        "state": json.dumps(state_to_record(w.release)),
                        "auditSeq": w.release.audit_seq + len(w.audit),
                        "dueAt": attention_at(w.release),
                    },
                    etag,
                )
                due = attention_at(w.release)
                if due is None:
                    self._due.pop(w.release.id, None)
                else:
                    self._due[w.release.id] = DueRef(w.release.id, site_key, due, w.release.id)
                self._audit.setdefault(w.release.id, []).extend(audit_to_record(a) for a in w.audit)
                etags[w.release.id] = etag
            if site is not None:
                self._sites[site_key] = _Row(site_to_record(site.value), self._etag())
            return etags

    def load_admission(self, site_key: str, release_id: str, created_at: datetime) -> SiteView:
        with self._lock:
            site = self.load_site(site_key)
            existing = self.find_release(release_id)
            if existing is not None and existing.value.created_at != created_at:
                existing = None
            others = {}
            for other in (site.value.active, site.value.queued):
                if other and other != release_id:
                    found = self.find_release(other)
                    if found is not None:
                        others[other] = found
            return SiteView(site, existing, others)

    def load_due(self, ref: DueRef) -> tuple[Versioned[Release], Versioned[SiteState]] | None:
        with self._lock:
            found = self.find_release(ref.release_id)
            return (found, self.load_site(ref.site_key)) if found is not None else None

    def due_ref(self, release: Release) -> DueRef | None:
        due = attention_at(release)
        return DueRef(release.id, release.site_key, due, release.id) if due is not None else None

    def list_due(self, before: datetime, *, limit: int | None = None) -> list[DueRef]:
        with self._lock:
            self._check_available()
            due = sorted((r for r in self._due.values() if r.due_at <= before), key=_due_order)
        return due[:limit] if limit is not None else due

    def list_active(self) -> list[DueRef]:
        with self._lock:
            self._check_available()
            return sorted(self._due.values(), key=_due_order)

    def list_releases(
        self,
        *,
        site_key: str | None = None,
        site: str | None = None,
        phase: Phase | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[ReleaseSummary]:
        with self._lock:
            self._check_available()
            releases = [self.load_release(rid).value for rid in self._releases]
        chosen = [
            r
            for r in releases
            if (site_key is None or r.site_key == site_key)
            and (site is None or r.spec.target.site.lower() == site.lower())
            and (phase is None or r.phase is phase)
        ]
        chosen.sort(key=lambda r: (r.site_key, -r.created_at.timestamp(), r.id))
        start = 0
        if cursor is not None:
            try:
                start = int(json.loads(base64.urlsafe_b64decode(cursor.encode()))["offset"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError("cursor is not one this API handed out") from exc
        page = chosen[start : start + limit]
        more = start + limit < len(chosen)
        next_cursor = (
            base64.urlsafe_b64encode(json.dumps({"offset": start + limit}).encode()).decode() if more else None
        )
        return Page([summarize(r) for r in page], next_cursor)

    def list_site_releases(self, site_key: str) -> list[Versioned[Release]]:
        with self._lock:
            self._check_available()
            found = [self.find_release(rid) for rid in list(self._releases)]
        mine = [f for f in found if f is not None and f.value.site_key == site_key]
        return sorted(mine, key=lambda v: (-v.value.created_at.timestamp(), v.value.id))

    def list_audit(self, release_id: str) -> list[StoredAudit]:
        with self._lock:
            self._check_available()
            if release_id not in self._releases:
                raise ReleaseNotFound(release_id)
            return [StoredAudit(i + 1, audit_from_record(a)) for i, a in enumerate(self._audit[release_id])]

    def save_rejected(self, event: RejectedEvent) -> str:
        with self._lock:
            self._check_available()
            self.rejected.append(event)
            return str(len(self.rejected))

    def list_rejected(self, day: str, limit: int = 1000) -> list[dict[str, Any]]:
        with self._lock:
            self._check_available()
            found = [(i, e) for i, e in enumerate(self.rejected) if e.received_at.strftime("%Y-%m-%d") == day]
        found.sort(key=lambda ie: (ie[1].received_at, ie[0]), reverse=True)
        return [
            {
                "id": f"{day}/{i}",
                "receivedAt": iso(e.received_at),
                "source": e.source,
                "messageId": e.message_id,
                "reason": e.reason,
                "errors": [list(pair) for pair in e.errors],
                "body": e.body,
                "bodyLength": len(e.body),
                "bodyTruncated": False,
                "details": dict(e.details),
            }
            for i, e in found[:limit]
        ]


def summarize(r: Release) -> ReleaseSummary:
    t = r.spec.target
    return ReleaseSummary(
        release_id=r.id,
        site_key=r.site_key,
        subscription_id=t.subscription_id,
        resource_group=t.resource_group,
        site=t.site,
        slot=t.slot,
        version=r.spec.version,
        phase=r.phase,
        paused=r.paused,
        weight=r.weight,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


# ---------------------------------------------------------------------------------------------
# App Service
# ---------------------------------------------------------------------------------------------


@dataclass
class SlotModel:
    host: str
    settings: dict[str, str] = field(default_factory=dict)
    artifact: Artifact | None = None
    ready: bool = True


@dataclass
class SwapOp:
    slot: str
    remaining_observations: int
    fail_with: str | None = None
    status: SwapStatus = SwapStatus.IN_PROGRESS
    started_at: datetime | None = None


@dataclass
class SiteModel:
    production: SlotModel
    slots: dict[str, SlotModel]
    weight: float = 0.0
    swaps: dict[str, SwapOp] = field(default_factory=dict)


class InMemorySlotPlatform:
    """A model of App Service slots: settings, artifact, ramp-up weight and slot swaps.

    ``swap_duration`` is how many observations a swap stays in progress; ``fail_next`` makes the
    next call of an operation raise (fault injection); ``calls`` records every operation.
    """

    def __init__(
        self,
        *,
        auto_create: bool = True,
        swap_duration: int = 0,
        warmup_observations: int = 0,
        clock: FakeClock | None = None,
        max_swap_seconds: float = 25 * 60,
    ):
        self._lock = threading.RLock()
        # With a clock, no swap outlasts ``max_swap_seconds`` (Azure reports failures after 11-23
        # minutes), however far apart the observations are.
        self.clock = clock
        self.max_swap_seconds = max_swap_seconds
        self.sites: dict[str, SiteModel] = {}
        self.auto_create = auto_create
        self.swap_duration = swap_duration
        self.warmup_observations = warmup_observations
        self._warmup: dict[tuple[str, str], int] = {}
        self._faults: dict[str, list[Exception]] = {}
        self._tokens = itertools.count(1)
        self.calls: list[tuple[str, str]] = []
        self.fail_next_swap_with: str | None = None

    def add_site(self, target: Target, *, production_release: str | None = None, version: str = "0") -> SiteModel:
        with self._lock:
            production = SlotModel(host=f"{target.site}.azurewebsites.net")
            if production_release:
                production.settings.update(RELEASE_ID=production_release, RELEASE_VERSION=version)
            site = SiteModel(
                production=production,
                slots={target.slot: SlotModel(host=f"{target.site}-{target.slot}.azurewebsites.net")},
            )
            self.sites[target.site_key] = site
            return site

    def fail_next(self, operation: str, error: Exception) -> None:
        """Make the next call of ``operation`` (observe, deploy, set_weight, begin_swap) raise."""
        with self._lock:
            self._faults.setdefault(operation, []).append(error)

    def _enter(self, operation: str, target: Target) -> tuple[SiteModel, SlotModel]:
        self.calls.append((operation, target.site_key))
        faults = self._faults.get(operation)
        if faults:
            raise faults.pop(0)
        site = self.sites.get(target.site_key)
        if site is None:
            if not self.auto_create:
                raise TerminalPlatformError(
                    f"site {target.site} was not found in resource group {target.resource_group}",
                    status=404,
                    code="ResourceNotFound",
                )
            site = self.add_site(target)
        slot = site.slots.get(target.slot)
        if slot is None:
            raise TerminalPlatformError(
                f"slot {target.slot} does not exist on site {target.site}; create it first",
                status=404,
                code="ResourceNotFound",
            )
        return site, slot

    def observe(self, target: Target, *, swap_token: str | None = None, probe_staging: bool = False) -> SlotObservation:
        with self._lock:
            site, slot = self._enter("observe", target)
            for op in site.swaps.values():
                if op.status is SwapStatus.IN_PROGRESS:
                    if op.remaining_observations > 0 and not self._swap_timed_out(op):
                        op.remaining_observations -= 1
                    else:
                        self._finish_swap(site, op)
            key = (target.site_key, target.slot)
            if key in self._warmup:
                self._warmup[key] -= 1
                if self._warmup[key] <= 0:
                    del self._warmup[key]
                    slot.ready = True
            swap = None
            if swap_token is not None:
                op = site.swaps.get(swap_token)
                swap = (
                    SwapState(op.status, op.fail_with or "")
                    if op
                    else SwapState(SwapStatus.FAILED, "unknown continuation token")
                )
            return SlotObservation(
                production_release=site.production.settings.get("RELEASE_ID"),
                staging_release=slot.settings.get("RELEASE_ID"),
                staging_ready=slot.ready,
                weight=site.weight,
                staging_host=slot.host,
                production_host=site.production.host,
                swap=swap,
            )

    def deploy(
        self,
        target: Target,
        *,
        release_id: str,
        version: str,
        artifact: Artifact,
        app_settings: dict[str, str],
        warmup: Warmup | None = None,
    ) -> None:
        with self._lock:
            _, slot = self._enter("deploy", target)
            slot.settings = release_settings(
                slot.settings,
                release_id=release_id,
                version=version,
                artifact=artifact,
                app_settings=app_settings,
                warmup=warmup,
            )
            slot.artifact = artifact
            if self.warmup_observations:
                slot.ready = False
                self._warmup[(target.site_key, target.slot)] = self.warmup_observations

    def set_weight(self, target: Target, weight: float) -> None:
        with self._lock:
            site, _ = self._enter("set_weight", target)
            site.weight = weight

    def begin_swap(self, target: Target) -> str:
        with self._lock:
            site, _ = self._enter("begin_swap", target)
            if any(op.status is SwapStatus.IN_PROGRESS for op in site.swaps.values()):
                raise TransientPlatformError("another swap is in progress on this site", status=409, code="Conflict")
            token = f"swap-{next(self._tokens)}"
            started = self.clock.now() if self.clock is not None else None
            op = SwapOp(target.slot, self.swap_duration, fail_with=self.fail_next_swap_with, started_at=started)
            self.fail_next_swap_with = None
            site.swaps[token] = op
            if self.swap_duration == 0:
                self._finish_swap(site, op)
            return token

    def restore_staging(self, target: Target, last_good: LastGood) -> None:
        self.deploy(
            target,
            release_id=last_good.release_id,
            version=last_good.version,
            artifact=last_good.artifact,
            app_settings=last_good.app_settings,
        )

    def _swap_timed_out(self, op: SwapOp) -> bool:
        if self.clock is None or op.started_at is None:
            return False
        return (self.clock.now() - op.started_at).total_seconds() >= self.max_swap_seconds

    @staticmethod
    def _finish_swap(site: SiteModel, op: SwapOp) -> None:
        if op.fail_with:
            op.status = SwapStatus.FAILED
            return
        slot = site.slots[op.slot]
        production = site.production
        slot.settings, production.settings = production.settings, slot.settings
        slot.artifact, production.artifact = production.artifact, slot.artifact
        op.status = SwapStatus.SUCCEEDED

    def swaps_started(self, target: Target) -> int:
        return sum(1 for op, key in self.calls if op == "begin_swap" and key == target.site_key)


# ---------------------------------------------------------------------------------------------
# Validation, analysis, notification, time
# ---------------------------------------------------------------------------------------------


class ScriptedValidator:
    """Answers every check with ``passed`` (and ``status``) until told otherwise."""

    def __init__(self, passed: bool = True, status: int = 200):
        self.passed = passed
        self.status = status
        self.rounds = 0

    def run_checks(self, host: str, checks: tuple[Check, ...]) -> tuple[CheckResult, ...]:
        self.rounds += 1
        status = self.status if self.passed else (self.status if self.status != 200 else 503)
        return tuple(CheckResult(c, self.passed, status=status, latency_ms=5.0) for c in checks)


class ScriptedAnalyzer:
    """Returns the measurement ``script`` makes for each call (default: a healthy canary)."""

    def __init__(self, script: Callable[[Release, datetime], tuple[Measurement, ...]] | None = None):
        self.script = script or healthy
        self.calls = 0
        self.gate_answer = True
        self.gates_asked: list[WebhookStage] = []

    def measure(
        self,
        release: Release,
        slots: SlotObservation,
        providers: tuple[ProviderSpec, ...],
        window_start: datetime,
        now: datetime,
    ) -> tuple[Measurement, ...]:
        self.calls += 1
        return self.script(release, now)

    def ask_gates(self, release: Release, slots: SlotObservation, stage: WebhookStage) -> tuple[GateResult, ...]:
        self.gates_asked.append(stage)
        detail = "scripted yes" if self.gate_answer else "scripted no"
        return (GateResult(ProviderKind.WEBHOOK, self.gate_answer, detail, stage),)


def healthy(release: Release, now: datetime) -> tuple[Measurement, ...]:
    requests = max(release.spec.analysis.min_requests, 100)
    return (
        Measurement(
            ProviderKind.HTTP,
            canary=VersionStats(requests=requests, errors=0, latency_ms=20.0),
            stable=VersionStats(requests=requests, errors=0, latency_ms=20.0),
        ),
    )


class RecordingNotifier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def notify(self, release: Release, severity: str, message: str) -> None:
        self.sent.append((release.id, severity, message))


class FakeClock:
    def __init__(self, start: datetime | None = None):
        self._now = start or datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


class RecordingWorkQueue:
    """A work queue that keeps what was sent (release id, due time, delay), for the service's tests."""

    def __init__(self) -> None:
        self.sent: list[tuple[DueRef, float]] = []
        self.failures = 0
        self._lock = threading.Lock()

    def send(self, ref: DueRef, *, delay_seconds: float = 0.0) -> None:
        with self._lock:
            if self.failures > 0:
                self.failures -= 1
                raise ConnectionError("the queue service did not answer")
            self.sent.append((ref, delay_seconds))

    def take(self) -> list[tuple[DueRef, float]]:
        with self._lock:
            sent, self.sent = self.sent, []
            return sent
