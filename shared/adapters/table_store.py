"""The release store on Azure Table Storage (Azurite locally).

Tables (names take an optional prefix):
- ``Releases``: one partition per site. Rows: ``site`` (active/queued/last good), ``release|<inverted
  time>|<id>`` (newest first), ``audit|<id>|<seq>``, and ``due|<due time>|<id>``: one per unsettled
  release, keyed by when it next needs attention. A transition, its audit rows, its due row and the
  site row are one entity-group transaction, If-Match on every row that existed, so the due index
  can never disagree with the releases. The timer reads only the due rows whose key is before now
  (a RowKey range); a release that is waiting costs nothing.
- ``ReleaseIndex``: partition ``id`` maps a release id to its site and row (point reads, idempotent
  creation); partition ``token`` records each CI identity token spent on an event (a token may
  carry one release plan only).
- ``RejectedEvents``: one row per invalid event, with the full body, the reason and the time.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableServiceClient, TableTransactionError, UpdateMode

from shared.adapters.codec import (
    audit_from_record,
    audit_to_record,
    iso,
    parse_iso,
    release_from_records,
    site_from_record,
    site_to_record,
    spec_from_record,
    spec_to_record,
    state_to_record,
)
from shared.adapters.table_rows import (
    BINARY_CHUNK_BYTES,
    INVERTED_BASE,
    MAX_BATCH_OPERATIONS,
    MAX_ENTITY_BYTES,
    MAX_MESSAGE_CHARS,
    MAX_REJECTED_BODY_BYTES,
    MAX_STRING_UTF16_UNITS,
    audit_row_key,
    decode_cursor,
    due_row_key,
    encode_cursor,
    entity_size,
    get_text,
    guard,
    measurement_row_key,
    millis,
    put_text,
    release_row_key,
    short,
    summary,
    table_key,
    table_missing,
)
from shared.domain.lifecycle.schedule import attention_at
from shared.domain.model import Phase, Release, ReleaseSpec, SiteState
from shared.domain.schema import spec_fingerprint
from shared.ports import (
    MEASUREMENTS_KEPT,
    ConcurrencyConflict,
    DueRef,
    DuplicateRelease,
    EntityTooLarge,
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

if TYPE_CHECKING:
    from azure.data.tables import TableClient

log = logging.getLogger(__name__)

SPEC_CACHE_SIZE = 4096


class TableReleaseStore:
    def __init__(self, service: TableServiceClient, *, prefix: str = ""):
        self._service = service
        self._names = {n: f"{prefix}{n}" for n in ("Releases", "ReleaseIndex", "RejectedEvents")}
        self._clients: dict[str, TableClient] = {}
        self._lock = threading.Lock()
        self._specs: dict[str, ReleaseSpec] = {}
        self._due_index_ready = False

    @classmethod
    def from_connection_string(cls, conn: str, *, prefix: str = "", **client_kwargs: Any) -> TableReleaseStore:
        return cls(TableServiceClient.from_connection_string(conn, **client_kwargs), prefix=prefix)

    @classmethod
    def from_endpoint(cls, endpoint: str, credential: Any, *, prefix: str = "", **kw: Any) -> TableReleaseStore:
        return cls(TableServiceClient(endpoint=endpoint, credential=credential, **kw), prefix=prefix)

    def _table(self, name: str) -> TableClient:
        client = self._clients.get(name)
        if client is None:
            with self._lock:
                client = self._clients.get(name)
                if client is None:
                    with self._errors(f"creating table {self._names[name]}"):
                        client = self._service.create_table_if_not_exists(self._names[name])
                    self._clients[name] = client
        return client

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Translate SDK errors to the store's; anything unexpected stays loud.

        A table that has disappeared (storage was reset) is "storage unavailable" for this call;
        the next call creates it again.
        """
        try:
            yield
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise StoreUnavailable(f"{what}: storage unreachable: {exc}") from exc
        except (HttpResponseError, TableTransactionError) as exc:
            if table_missing(exc):
                with self._lock:
                    self._clients.clear()
                raise StoreUnavailable(f"{what}: a table is missing (storage was reset?); it is created again") from exc
            status = getattr(exc, "status_code", None)
            if status is not None and (status >= 500 or status in (408, 429)):
                raise StoreUnavailable(f"{what}: storage answered {status}") from exc
            raise

    @property
    def _releases(self) -> TableClient:
        return self._table("Releases")

    @property
    def _index(self) -> TableClient:
        return self._table("ReleaseIndex")

    # -- claims and lookups --------------------------------------------------------------------

    def _first_writer(self, entity: dict[str, Any], doing: str) -> dict[str, Any] | None:
        """Insert ``entity`` into the index unless its row exists: None when this write won, else
        the row the first writer left."""
        with self._errors(doing):
            try:
                self._index.create_entity(entity)
                return None
            except ResourceExistsError:
                return self._index.get_entity(entity["PartitionKey"], entity["RowKey"])

    def claim_release_id(self, claim: IdClaim) -> IdClaim:
        entity = {
            "PartitionKey": "id",
            "RowKey": table_key(claim.release_id),
            "ReleaseId": claim.release_id,
            "SiteKey": claim.site_key,
            "Fingerprint": claim.fingerprint,
            "CreatedAt": iso(claim.created_at),
        }
        held = self._first_writer(entity, "claiming a release id")
        if held is None:
            return claim
        created_at = parse_iso(held["CreatedAt"])
        assert created_at is not None
        return IdClaim(held["ReleaseId"], held["SiteKey"], held["Fingerprint"], created_at)

    def claim_token(self, use: TokenUse) -> TokenUse:
        entity = {
            "PartitionKey": "token",
            "RowKey": table_key(use.token),
            "Token": use.token,
            "ReleaseId": use.release_id,
            "Fingerprint": use.fingerprint,
            "UsedAt": iso(use.used_at),
        }
        held = self._first_writer(entity, "recording a CI token's use")
        if held is None:
            return use
        used_at = parse_iso(held["UsedAt"])
        assert used_at is not None
        return TokenUse(held["Token"], held["ReleaseId"], held["Fingerprint"], used_at)

    def _lookup(self, release_id: str) -> dict[str, Any] | None:
        with self._errors("looking up a release"):
            try:
                return self._index.get_entity("id", table_key(release_id))
            except ResourceNotFoundError as exc:
                if table_missing(exc):
                    raise
                return None

    # -- reads -----------------------------------------------------------------------------------

    def load_site(self, site_key: str) -> Versioned[SiteState]:
        with self._errors("reading a site"):
            try:
                entity = self._releases.get_entity(table_key(site_key), "site")
            except ResourceNotFoundError as exc:
                if table_missing(exc):
                    raise
                return Versioned(SiteState(site_key), None)
        return Versioned(site_from_record(site_key, json.loads(entity["State"])), entity.metadata["etag"])

    def find_release(self, release_id: str) -> Versioned[Release] | None:
        claim = self._lookup(release_id)
        if claim is None:
            return None
        created_at = parse_iso(claim["CreatedAt"])
        assert created_at is not None
        with self._errors("reading a release"):
            try:
                entity = self._releases.get_entity(table_key(claim["SiteKey"]), release_row_key(release_id, created_at))
            except ResourceNotFoundError as exc:
                if table_missing(exc):
                    raise
                return None  # claimed, but its creation never committed
        return Versioned(self._release_from_entity(entity), entity.metadata["etag"])

    def load_release(self, release_id: str) -> Versioned[Release]:
        found = self.find_release(release_id)
        if found is None:
            raise ReleaseNotFound(release_id)
        return found

    def _spec(self, text: str) -> ReleaseSpec:
        """A stored plan, parsed (and validated) once per process: a spec never changes under its
        text, and most reconciles read the same few."""
        spec = self._specs.get(text)
        if spec is None:
            spec = spec_from_record(json.loads(text))
            if len(self._specs) >= SPEC_CACHE_SIZE:
                self._specs.clear()
            self._specs[text] = spec
        return spec

    def _release_from_entity(self, entity: dict[str, Any]) -> Release:
        spec = self._spec(get_text(entity, "Spec"))
        release = release_from_records(spec, json.loads(get_text(entity, "State")))
        return replace(
            release,
            audit_seq=int(entity["AuditSeq"]),
            measured_seq=int(entity.get("MeasuredSeq") or 0),
            indexed_due=parse_iso(entity.get("DueAt")),
        )

    # -- the transaction -------------------------------------------------------------------------

    def _release_entity(
        self, pk: str, release: Release, audit_seq: int, measured_seq: int, fingerprint: str | None
    ) -> dict[str, Any]:
        t = release.spec.target
        entity: dict[str, Any] = {
            "PartitionKey": pk,
            "RowKey": release_row_key(release.id, release.created_at),
            "Kind": "release",
            "ReleaseId": release.id,
            "SubscriptionId": t.subscription_id,
            "ResourceGroup": t.resource_group,
            "Site": t.site,
            "SiteName": t.site.lower(),
            "Slot": t.slot,
            "Version": release.spec.version,
            "Phase": release.phase.value,
            "Paused": release.paused,
            "Weight": float(release.weight),
            "CreatedAt": iso(release.created_at),
            "UpdatedAt": iso(release.updated_at),
            "AuditSeq": audit_seq,
            "MeasuredSeq": measured_seq,
        }
        if fingerprint:
            entity["Fingerprint"] = fingerprint
        due = attention_at(release)
        if due is not None:
            entity["DueAt"] = iso(due)
        put_text(entity, "Spec", json.dumps(spec_to_record(release.spec), separators=(",", ":")))
        put_text(entity, "State", json.dumps(state_to_record(release), separators=(",", ":")))
        return guard(entity)

    def _audit_entity(self, pk: str, release_id: str, seq: int, record: dict[str, Any]) -> dict[str, Any]:
        details = json.dumps(record["details"], separators=(",", ":"), default=str)
        if len(details) > MAX_MESSAGE_CHARS * 2:
            details = json.dumps({"truncated": True, "text": details[:MAX_MESSAGE_CHARS]})
        return guard(
            {
                "PartitionKey": pk,
                "RowKey": audit_row_key(release_id, seq),
                "Kind": "audit",
                "ReleaseId": release_id,
                "Seq": seq,
                "At": record["at"],
                "Actor": short(record["actor"], 256),
                "Action": record["action"],
                "Message": short(record["message"]),
                "PhaseFrom": record["phaseFrom"],
                "PhaseTo": record["phaseTo"],
                "Weight": float(record["weight"]),
                "Details": details,
            }
        )

    def _measurement_entity(self, pk: str, release_id: str, seq: int, record: dict[str, Any]) -> dict[str, Any]:
        text = json.dumps(record, separators=(",", ":"), default=str)
        if len(text) > MAX_MESSAGE_CHARS * 2:
            text = json.dumps({"truncated": True, "text": text[:MAX_MESSAGE_CHARS]})
        return guard(
            {
                "PartitionKey": pk,
                "RowKey": measurement_row_key(release_id, seq),
                "Kind": "measurement",
                "ReleaseId": release_id,
                "Seq": seq,
                "Record": text,
            }
        )

    def commit(
        self, site_key: str, writes: list[ReleaseWrite], site: Versioned[SiteState] | None = None
    ) -> dict[str, str]:
        pk = table_key(site_key)
        operations: list[tuple[Any, ...]] = []
        kinds: list[str] = []
        for w in writes:
            if w.release.site_key != site_key:
                raise ValueError("every release in a commit must belong to the same site")
            base = w.release.audit_seq
            measured = w.release.measured_seq
            entity = self._release_entity(
                pk, w.release, base + len(w.audit), measured + len(w.measurements), w.fingerprint
            )
            if w.etag is None:
                operations.append(("create", entity))
                kinds.append("insert-release")
            else:
                operations.append(
                    (
                        "update",
                        entity,
                        {"mode": UpdateMode.REPLACE, "etag": w.etag, "match_condition": MatchConditions.IfNotModified},
                    )
                )
                kinds.append("update")
            for offset, entry in enumerate(w.audit, start=1):
                operations.append(
                    ("create", self._audit_entity(pk, w.release.id, base + offset, audit_to_record(entry)))
                )
                kinds.append("insert-audit")
            for offset, record in enumerate(w.measurements, start=1):
                seq = measured + offset
                operations.append(("create", self._measurement_entity(pk, w.release.id, seq, record)))
                kinds.append("insert-measurement")
                if seq > MEASUREMENTS_KEPT:  # the oldest kept one goes: a release keeps its newest
                    gone = measurement_row_key(w.release.id, seq - MEASUREMENTS_KEPT)
                    operations.append(("delete", {"PartitionKey": pk, "RowKey": gone}))
                    kinds.append("delete-measurement")
            self._move_due(pk, w, entity["RowKey"], operations, kinds)
        if site is not None:
            entity = guard(
                {
                    "PartitionKey": pk,
                    "RowKey": "site",
                    "Kind": "site",
                    "State": json.dumps(site_to_record(site.value), separators=(",", ":")),
                }
            )
            if site.etag is None:
                operations.append(("create", entity))
                kinds.append("insert-site")
            else:
                operations.append(
                    (
                        "update",
                        entity,
                        {
                            "mode": UpdateMode.REPLACE,
                            "etag": site.etag,
                            "match_condition": MatchConditions.IfNotModified,
                        },
                    )
                )
                kinds.append("update")
        if len(operations) > MAX_BATCH_OPERATIONS:
            raise EntityTooLarge(f"a transaction of {len(operations)} rows exceeds {MAX_BATCH_OPERATIONS}")

        # A new release is written only under an id claimed for this site and plan.
        for w in writes:
            if w.etag is not None or w.claimed:
                continue
            release = w.release
            fingerprint = w.fingerprint or spec_fingerprint(release.spec)
            held = self.claim_release_id(IdClaim(release.id, site_key, fingerprint, release.created_at))
            if held.site_key != site_key or held.fingerprint != fingerprint:
                raise ReleaseIdConflict(release.id, held.site_key)
        try:
            with self._errors("committing a release transition"):
                results = self._releases.submit_transaction(operations)
        except TableTransactionError as exc:
            code = str(exc.error_code or "")
            kind = kinds[exc.index] if 0 <= exc.index < len(kinds) else ""
            if code == "EntityAlreadyExists" and kind == "insert-release":
                raise DuplicateRelease(str(exc.message)) from exc
            if code in ("UpdateConditionNotSatisfied", "EntityAlreadyExists", "ResourceNotFound"):
                raise ConcurrencyConflict(f"{code} at operation {exc.index} ({kind})") from exc
            if code in ("EntityTooLarge", "PropertyValueTooLarge", "RequestBodyTooLarge"):
                raise EntityTooLarge(code) from exc
            with self._errors("committing a release transition"):
                raise
        etags: dict[str, str] = {}
        for op, result, w_kind in zip(operations, results, kinds, strict=True):
            if w_kind in ("insert-release", "update") and op[1].get("Kind") == "release":
                etags[op[1]["ReleaseId"]] = result.get("etag", "")
        return etags

    @staticmethod
    def _move_due(pk: str, w: ReleaseWrite, release_row: str, operations: list[Any], kinds: list[str]) -> None:
        """Move the release's due row from where it was loaded to where it now belongs."""
        was = w.release.indexed_due if w.etag is not None else None
        now = attention_at(w.release)
        old_key = due_row_key(w.release.id, was) if was is not None else None
        new_key = due_row_key(w.release.id, now) if now is not None else None
        if old_key is not None and old_key != new_key:
            operations.append(("delete", {"PartitionKey": pk, "RowKey": old_key}))
            kinds.append("delete-due")
        if new_key is not None and (new_key != old_key or was != now):
            assert now is not None
            entity = {
                "PartitionKey": pk,
                "RowKey": new_key,
                "Kind": "due",
                "ReleaseId": w.release.id,
                "SiteKey": w.release.site_key,
                "ReleaseRow": release_row,
                "DueAt": iso(now),
            }
            operations.append(("upsert", entity, {"mode": UpdateMode.REPLACE}))
            kinds.append("upsert-due")

    # -- the due index ---------------------------------------------------------------------------

    def ensure_due_index(self) -> int:
        """Index the unsettled releases saved before the due index existed (rows without
        ``DueAt``), once per store: a marker row records that it was done, so after the first call
        this costs one point read per process. Returns how many releases it indexed."""
        if self._due_index_ready:
            return 0
        with self._errors("checking the due index"):
            try:
                self._index.get_entity("meta", "dueIndex")
                self._due_index_ready = True
                return 0
            except ResourceNotFoundError as exc:
                if table_missing(exc):
                    raise
        indexed = 0
        with self._errors("indexing releases saved before the due index"):
            rows = list(self._releases.query_entities("Kind eq @kind", parameters={"kind": "release"}))
        for row in rows:
            if row.get("DueAt"):
                continue
            release = self._release_from_entity(row)
            due = attention_at(release)
            if due is None:
                continue
            updated = {**row, "DueAt": iso(due)}
            operations: list[Any] = [
                (
                    "update",
                    updated,
                    {
                        "mode": UpdateMode.REPLACE,
                        "etag": row.metadata["etag"],
                        "match_condition": MatchConditions.IfNotModified,
                    },
                )
            ]
            self._move_due(row["PartitionKey"], ReleaseWrite(release, None), row["RowKey"], operations, [])
            try:
                with self._errors("indexing a release saved before the due index"):
                    self._releases.submit_transaction(operations)
                indexed += 1
            except TableTransactionError:
                continue  # saved since (and so indexed by that save)
        with self._errors("marking the due index complete"):
            marker = {"PartitionKey": "meta", "RowKey": "dueIndex", "IndexedAt": iso(datetime.now(UTC))}
            self._index.upsert_entity(marker)
        self._due_index_ready = True
        return indexed

    def _query_due(self, high: str, limit: int | None) -> list[DueRef]:
        query = "RowKey gt @lo and RowKey lt @hi"
        parameters = {"lo": "due|", "hi": high}
        select = ["RowKey", "ReleaseId", "SiteKey", "ReleaseRow", "DueAt"]
        with self._errors("listing due releases"):
            rows = self._releases.query_entities(
                query, parameters=parameters, select=select, results_per_page=min(limit or 1000, 1000)
            )
            found = list(itertools.islice(rows, limit) if limit is not None else rows)
        refs = []
        for r in found:
            due_at = parse_iso(r["DueAt"])
            assert due_at is not None
            refs.append(DueRef(r["ReleaseId"], r["SiteKey"], due_at, r["ReleaseRow"]))
        refs.sort(key=lambda ref: (ref.due_at, ref.release_id))
        return refs

    def due_ref(self, release: Release) -> DueRef | None:
        due = attention_at(release)
        if due is None:
            return None
        return DueRef(release.id, release.site_key, due, release_row_key(release.id, release.created_at))

    def list_due(self, before: datetime, *, limit: int | None = None) -> list[DueRef]:
        return self._query_due(f"due|{millis(before) + 1:013d}", limit)

    def list_active(self) -> list[DueRef]:
        return self._query_due("due}", None)

    def _rows(self, query: str, parameters: dict[str, Any], doing: str) -> list[Any]:
        with self._errors(doing):
            return list(self._releases.query_entities(query, parameters=parameters))

    def load_admission(self, site_key: str, release_id: str, created_at: datetime) -> SiteView:
        pk = table_key(site_key)
        own = release_row_key(release_id, created_at)
        rows = self._rows(
            "PartitionKey eq @pk and (RowKey eq @site or RowKey eq @own or (RowKey gt @lo and RowKey lt @hi ))",
            {"pk": pk, "site": "site", "own": own, "lo": "due|", "hi": "due}"},
            "reading a site for an admission",
        )
        site: Versioned[SiteState] = Versioned(SiteState(site_key), None)
        existing = None
        where: dict[str, str] = {}
        for row in rows:
            if row["RowKey"] == "site":
                site = Versioned(site_from_record(site_key, json.loads(row["State"])), row.metadata["etag"])
            elif row["RowKey"] == own:
                existing = Versioned(self._release_from_entity(row), row.metadata["etag"])
            else:
                where[row["ReleaseId"]] = row["ReleaseRow"]
        wanted = [i for i in (site.value.active, site.value.queued) if i and i != release_id]
        others: dict[str, Versioned[Release]] = {}
        known = [where[i] for i in wanted if i in where]
        if known:
            # (The SDK substitutes @names in words split on single spaces: keep one space around each.)
            clauses = " or ".join(f"RowKey eq @r{n}" for n in range(len(known)))
            params: dict[str, Any] = {"pk": pk, **{f"r{n}": row for n, row in enumerate(known)}}
            for row in self._rows(f"PartitionKey eq @pk and ( {clauses} )", params, "reading a site's releases"):
                release = self._release_from_entity(row)
                others[release.id] = Versioned(release, row.metadata["etag"])
        for i in wanted:
            if i not in others:  # not in the due index (never the case for an unsettled release)
                found = self.find_release(i)
                if found is not None:
                    others[i] = found
        return SiteView(site, existing, others)

    def load_due(self, ref: DueRef) -> tuple[Versioned[Release], Versioned[SiteState]] | None:
        if ref.row is None:
            found = self.find_release(ref.release_id)
            return (found, self.load_site(ref.site_key)) if found is not None else None
        pk = table_key(ref.site_key)
        with self._errors("reading a release with its site"):
            rows = list(
                self._releases.query_entities(
                    "PartitionKey eq @pk and (RowKey eq @site or RowKey eq @row )",
                    parameters={"pk": pk, "site": "site", "row": ref.row},
                )
            )
        release = site = None
        for row in rows:
            if row["RowKey"] == "site":
                site = Versioned(site_from_record(ref.site_key, json.loads(row["State"])), row.metadata["etag"])
            else:
                release = Versioned(self._release_from_entity(row), row.metadata["etag"])
        if release is None:
            return None
        return release, site if site is not None else Versioned(SiteState(ref.site_key), None)

    # -- listing ---------------------------------------------------------------------------------

    def list_releases(
        self,
        *,
        site_key: str | None = None,
        site: str | None = None,
        phase: Phase | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[ReleaseSummary]:
        clauses = ["Kind eq @kind"]
        parameters: dict[str, Any] = {"kind": "release"}
        if site_key is not None:
            clauses.insert(0, "PartitionKey eq @pk")
            parameters["pk"] = table_key(site_key)
        if site is not None:
            clauses.append("SiteName eq @site")
            parameters["site"] = site.lower()
        if phase is not None:
            clauses.append("Phase eq @phase")
            parameters["phase"] = phase.value
        token = decode_cursor(cursor)
        items: list[ReleaseSummary] = []
        select = [
            "PartitionKey",
            "ReleaseId",
            "SubscriptionId",
            "ResourceGroup",
            "Site",
            "Slot",
            "Version",
            "Phase",
            "Paused",
            "Weight",
            "CreatedAt",
            "UpdatedAt",
        ]
        with self._errors("listing releases"):
            while True:
                pager = self._releases.query_entities(
                    " and ".join(clauses),
                    parameters=parameters,
                    results_per_page=limit - len(items),
                    select=select,
                ).by_page(continuation_token=token)
                page = next(pager, None)
                rows = list(page) if page is not None else []
                items.extend(summary(row) for row in rows)
                token = pager.continuation_token
                if not token or len(items) >= limit:
                    break
        return Page(items[:limit], encode_cursor(token) if token else None)

    # -- rollouts: one row each in the index table's "rollout" partition ------------------------

    def _rollout_entity(self, rollout: Any) -> dict[str, Any]:
        from shared.adapters.waves_codec import rollout_to_record

        entity: dict[str, Any] = {
            "PartitionKey": "rollout",
            "RowKey": table_key(rollout.id),
            "Active": not rollout.is_final,
            "CreatedAt": iso(rollout.created_at),
        }
        put_text(entity, "State", json.dumps(rollout_to_record(rollout), separators=(",", ":")))
        return guard(entity)

    def create_rollout(self, rollout: Any) -> bool:
        with self._errors("creating a rollout"):
            try:
                self._index.create_entity(self._rollout_entity(rollout))
            except ResourceExistsError:
                return False
        return True

    def _rollout_from_entity(self, entity: Any) -> Any:
        from shared.adapters.waves_codec import rollout_from_record

        return rollout_from_record(json.loads(get_text(entity, "State")))

    def load_rollout(self, rollout_id: str) -> Versioned[Any]:
        with self._errors("reading a rollout"):
            try:
                entity = self._index.get_entity("rollout", table_key(rollout_id))
            except ResourceNotFoundError as exc:
                if table_missing(exc):
                    raise
                raise RolloutNotFound(rollout_id) from None
        return Versioned(self._rollout_from_entity(entity), entity.metadata["etag"])

    def save_rollout(self, rollout: Any, etag: str) -> None:
        with self._errors("saving a rollout"):
            try:
                self._index.update_entity(
                    self._rollout_entity(rollout),
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceNotFoundError) as exc:
                raise ConcurrencyConflict(f"rollout {rollout.id} changed meanwhile") from exc

    def list_rollouts(self, *, active: bool | None = None, limit: int = 200) -> list[Any]:
        query, params = "PartitionKey eq @pk", {"pk": "rollout"}
        if active is not None:
            query, params = "PartitionKey eq @pk and Active eq @active", {"pk": "rollout", "active": active}
        with self._errors("listing rollouts"):
            rows = list(itertools.islice(self._index.query_entities(query, parameters=params), 2000))
        found = [self._rollout_from_entity(row) for row in rows]
        return sorted(found, key=lambda r: r.created_at, reverse=True)[:limit]

    def load_stop(self) -> Versioned[StopSwitch | None]:
        with self._errors("reading the stop switch"):
            try:
                row = self._index.get_entity("control", "stop")
            except ResourceNotFoundError as exc:
                if table_missing(exc):
                    raise
                return Versioned(None, None)
        switch = StopSwitch(bool(row["On"]), str(row["Reason"]), str(row["By"]), parse_iso(row["At"]))  # type: ignore[arg-type]
        return Versioned(switch, row.metadata["etag"])

    def save_stop(self, switch: StopSwitch, etag: str | None) -> None:
        entity = {
            "PartitionKey": "control",
            "RowKey": "stop",
            "On": switch.on,
            "Reason": switch.reason[:1000],
            "By": switch.by[:300],
            "At": iso(switch.at),
        }
        with self._errors("setting the stop switch"):
            try:
                if etag is None:
                    self._index.create_entity(entity)
                else:
                    self._index.update_entity(
                        entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                    )
            except (ResourceExistsError, ResourceModifiedError) as exc:
                raise ConcurrencyConflict("the stop switch changed meanwhile") from exc

    def list_sites(self) -> list[SiteState]:
        with self._errors("listing sites"):
            rows = list(self._releases.query_entities("RowKey eq @site", parameters={"site": "site"}))
        # PartitionKey is the site key with a few characters %-escaped (table_key): unquote reverses it.
        return [site_from_record(unquote(row["PartitionKey"]), json.loads(row["State"])) for row in rows]

    def list_site_releases(self, site_key: str) -> list[Versioned[Release]]:
        with self._errors("reading a site's releases"):
            rows = list(
                self._releases.query_entities(
                    "PartitionKey eq @pk and Kind eq @kind", parameters={"pk": table_key(site_key), "kind": "release"}
                )
            )
        return [Versioned(self._release_from_entity(row), row.metadata["etag"]) for row in rows]

    def list_in_phase(self, phase: Phase, *, limit: int = 1000) -> list[Release]:
        with self._errors("listing releases in a phase"):
            rows = self._releases.query_entities(
                "Kind eq @kind and Phase eq @phase",
                parameters={"kind": "release", "phase": phase.value},
                results_per_page=min(limit, 1000),
            )
            return [self._release_from_entity(row) for row in itertools.islice(rows, limit)]

    def list_measurements(self, release_id: str) -> list[StoredMeasurement]:
        claim = self._lookup(release_id)
        if claim is None:
            raise ReleaseNotFound(release_id)
        key = table_key(release_id)
        with self._errors("reading a release's measurements"):
            rows = list(
                self._releases.query_entities(
                    "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                    parameters={"pk": table_key(claim["SiteKey"]), "lo": f"evidence|{key}|", "hi": f"evidence|{key}}}"},
                )
            )
        kept = [StoredMeasurement(int(row["Seq"]), json.loads(row["Record"])) for row in rows]
        return sorted(kept, key=lambda m: m.seq, reverse=True)

    def list_audit(self, release_id: str) -> list[StoredAudit]:
        claim = self._lookup(release_id)
        if claim is None:
            raise ReleaseNotFound(release_id)
        key = table_key(release_id)
        with self._errors("reading the audit trail"):
            rows = list(
                self._releases.query_entities(
                    "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                    parameters={"pk": table_key(claim["SiteKey"]), "lo": f"audit|{key}|", "hi": f"audit|{key}}}"},
                )
            )
        out = []
        for row in rows:
            record = {
                "at": row["At"],
                "actor": row["Actor"],
                "action": row["Action"],
                "message": row["Message"],
                "phaseFrom": row["PhaseFrom"],
                "phaseTo": row["PhaseTo"],
                "weight": row["Weight"],
                "details": json.loads(row["Details"]),
            }
            out.append(StoredAudit(int(row["Seq"]), audit_from_record(record)))
        return out

    # -- rejected events -------------------------------------------------------------------------

    def save_rejected(self, event: RejectedEvent) -> str:
        day = event.received_at.strftime("%Y-%m-%d")
        inverted = INVERTED_BASE - int(event.received_at.timestamp() * 1000)
        row_key = f"{inverted:013d}|{uuid.uuid4().hex}"
        body = event.body[:MAX_REJECTED_BODY_BYTES]
        entity: dict[str, Any] = {
            "PartitionKey": day,
            "RowKey": row_key,
            "ReceivedAt": iso(event.received_at),
            "Source": event.source,
            "MessageId": short(event.message_id or "", 1024),
            "Reason": short(event.reason),
            "Errors": short(json.dumps(event.errors), 16000),
            "Details": short(json.dumps(event.details, default=str), 16000),
            "BodyLength": len(event.body),
            "BodySha256": hashlib.sha256(event.body).hexdigest(),
            "BodyTruncated": len(event.body) > len(body),
            "BodyChunks": max(1, -(-len(body) // BINARY_CHUNK_BYTES)),
        }
        for index in range(entity["BodyChunks"]):
            entity[f"Body{index}"] = body[index * BINARY_CHUNK_BYTES : (index + 1) * BINARY_CHUNK_BYTES] or b"\x00"[:0]
        with self._errors("storing a rejected event"):
            self._table("RejectedEvents").create_entity(guard(entity))
        return f"{day}/{row_key}"

    def list_rejected(self, day: str, limit: int = 1000) -> list[dict[str, Any]]:
        """The events rejected on ``day`` (``YYYY-MM-DD``), newest first, bodies as stored (redacted)."""
        with self._errors("listing rejected events"):
            query = self._table("RejectedEvents").query_entities(
                "PartitionKey eq @pk", parameters={"pk": day}, results_per_page=min(limit, 1000)
            )
            rows = list(itertools.islice(query, limit))
        out = []
        for row in rows:
            body = b"".join(bytes(row.get(f"Body{i}") or b"") for i in range(int(row["BodyChunks"])))
            out.append(
                {
                    "id": f"{row['PartitionKey']}/{row['RowKey']}",
                    "receivedAt": row["ReceivedAt"],
                    "source": row["Source"],
                    "messageId": row["MessageId"] or None,
                    "reason": row["Reason"],
                    "errors": json.loads(row["Errors"]),
                    "body": body,
                    "bodyLength": row["BodyLength"],
                    "bodyTruncated": row["BodyTruncated"],
                    "details": json.loads(row.get("Details") or "{}"),
                }
            )
        return out


__all__ = [
    "MAX_BATCH_OPERATIONS",
    "MAX_ENTITY_BYTES",
    "MAX_STRING_UTF16_UNITS",
    "EntityTooLarge",
    "TableReleaseStore",
    "entity_size",
    "guard",
    "table_key",
]
