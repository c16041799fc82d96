"""The release store in a dict: ETags, all-or-nothing commits, the due index, as Table Storage has them."""

from __future__ import annotations

import base64
import copy
import itertools
import json
import threading
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
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
from shared.domain.lifecycle.schedule import attention_at
from shared.domain.model import (
    Phase,
    Release,
    ReleaseSpec,
    SiteState,
)
from shared.domain.schema import spec_fingerprint
from shared.ports import (
    MEASUREMENTS_KEPT,
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
    RolloutNotFound,
    SiteView,
    StopSwitch,
    StoredAudit,
    StoredMeasurement,
    StoreUnavailable,
    TokenUse,
    Versioned,
)


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
        self._measurements: dict[str, list[StoredMeasurement]] = {}
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
            return Versioned(
                replace(
                    release,
                    audit_seq=data["auditSeq"],
                    measured_seq=data.get("measuredSeq", 0),
                    indexed_due=data.get("dueAt"),
                ),
                row.etag,
            )

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
                        "measuredSeq": w.release.measured_seq + len(w.measurements),
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
                kept = self._measurements.setdefault(w.release.id, [])
                for offset, record in enumerate(w.measurements, start=1):
                    kept.append(StoredMeasurement(w.release.measured_seq + offset, json.loads(json.dumps(record))))
                del kept[:-MEASUREMENTS_KEPT]
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

    def ensure_due_index(self) -> int:
        return 0  # every release here was saved with its due index

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

    def create_rollout(self, rollout: Any) -> bool:
        from shared.adapters.waves_codec import rollout_to_record

        with self._lock:
            self._check_available()
            rollouts = self.__dict__.setdefault("_rollouts", {})
            if rollout.id in rollouts:
                return False
            rollouts[rollout.id] = (json.dumps(rollout_to_record(rollout)), uuid.uuid4().hex)
            return True

    def load_rollout(self, rollout_id: str) -> Versioned[Any]:
        from shared.adapters.waves_codec import rollout_from_record

        with self._lock:
            self._check_available()
            held = self.__dict__.get("_rollouts", {}).get(rollout_id)
            if held is None:
                raise RolloutNotFound(rollout_id)
            return Versioned(rollout_from_record(json.loads(held[0])), held[1])

    def save_rollout(self, rollout: Any, etag: str) -> None:
        from shared.adapters.waves_codec import rollout_to_record

        with self._lock:
            self._check_available()
            rollouts = self.__dict__.setdefault("_rollouts", {})
            held = rollouts.get(rollout.id)
            if held is None or held[1] != etag:
                raise ConcurrencyConflict(f"rollout {rollout.id} changed meanwhile")
            rollouts[rollout.id] = (json.dumps(rollout_to_record(rollout)), uuid.uuid4().hex)

    def list_rollouts(self, *, active: bool | None = None, limit: int = 200) -> list[Any]:
        from shared.adapters.waves_codec import rollout_from_record

        with self._lock:
            self._check_available()
            found = [rollout_from_record(json.loads(t)) for t, _ in self.__dict__.get("_rollouts", {}).values()]
        if active is not None:
            found = [r for r in found if (not r.is_final) == active]
        return sorted(found, key=lambda r: r.created_at, reverse=True)[:limit]

    def load_stop(self) -> Versioned[StopSwitch | None]:
        with self._lock:
            self._check_available()
            held = getattr(self, "_stop", None)
            return Versioned(held[0], held[1]) if held else Versioned(None, None)

    def save_stop(self, switch: StopSwitch, etag: str | None) -> None:
        with self._lock:
            self._check_available()
            held = getattr(self, "_stop", None)
            if (held[1] if held else None) != etag:
                raise ConcurrencyConflict("the stop switch changed meanwhile")
            self._stop = (switch, uuid.uuid4().hex)

    def list_sites(self) -> list[SiteState]:
        with self._lock:
            self._check_available()
            return [site_from_record(key, copy.deepcopy(row.data)) for key, row in sorted(self._sites.items())]

    def list_site_releases(self, site_key: str) -> list[Versioned[Release]]:
        with self._lock:
            self._check_available()
            found = [self.find_release(rid) for rid in list(self._releases)]
        mine = [f for f in found if f is not None and f.value.site_key == site_key]
        return sorted(mine, key=lambda v: (-v.value.created_at.timestamp(), v.value.id))

    def list_in_phase(self, phase: Phase, *, limit: int = 1000) -> list[Release]:
        with self._lock:
            self._check_available()
            found = [self.find_release(rid) for rid in sorted(self._releases)]
        return [f.value for f in found if f is not None and f.value.phase is phase][:limit]

    def list_measurements(self, release_id: str) -> list[StoredMeasurement]:
        with self._lock:
            self._check_available()
            if release_id not in self._releases:
                raise ReleaseNotFound(release_id)
            return list(reversed(self._measurements.get(release_id, [])))

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
