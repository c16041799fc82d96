"""The capabilities the service layer needs from the outside world, one Protocol each.

Every port has an in-memory implementation (``shared.adapters.memory``) for tests and an Azure one.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from shared.domain.model import (
    Actor,
    Alert,
    Artifact,
    AuditEntry,
    Check,
    CheckResult,
    GateResult,
    LastGood,
    Measurement,
    Phase,
    ProviderSpec,
    Release,
    SiteState,
    SlotObservation,
    Target,
    Warmup,
    WebhookStage,
)

T = TypeVar("T")

if TYPE_CHECKING:
    from shared.authority.proofs import EventProof
    from shared.domain.policy import Origin, Policy


# ---------------------------------------------------------------------------------------------
# Errors the service understands
# ---------------------------------------------------------------------------------------------


class StoreError(Exception):
    """Base class of release store errors."""


class StoreUnavailable(StoreError):
    """Storage could not be reached or answered with a server error: retry later."""


class ConcurrencyConflict(StoreError):
    """Someone else changed the rows since they were read (ETag mismatch): reload and decide again."""


class RolloutNotFound(LookupError):
    def __init__(self, rollout_id: str):
        self.rollout_id = rollout_id
        super().__init__(f"rollout {rollout_id} not found")


class ReleaseNotFound(StoreError):
    def __init__(self, release_id: str):
        self.release_id = release_id
        super().__init__(f"no release with id {release_id!r}")


class DuplicateRelease(StoreError):
    """The release row already exists (the same event arrived again)."""


class ReleaseIdConflict(StoreError):
    """The release id is taken by a release with a different plan."""

    def __init__(self, release_id: str, existing_site_key: str):
        self.release_id = release_id
        self.existing_site_key = existing_site_key
        super().__init__(
            f"release id {release_id!r} already exists with a different body; "
            "a release id names one plan forever: send the change under a new id"
        )


# The monotonic time by which the current reconcile's observations must be done (set by the
# service around them, read by the probes): one release can never stall a whole tick.
RECONCILE_DEADLINE: ContextVar[float | None] = ContextVar("reconcile_deadline", default=None)


class BudgetSpent(Exception):
    """The reconcile's time budget ran out before an observation was complete; it is made again on
    the next tick (the release waits; nothing is judged on a partial observation)."""


class EntityTooLarge(StoreError):
    """A row would break a Table Storage limit (property size, entity size or batch size)."""


class PlatformError(Exception):
    """An App Service call failed. ``transient`` says whether retrying later may succeed."""

    transient: bool = True

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, retry_after: float | None = None
    ):
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after  # seconds the platform asked to wait (Retry-After)
        super().__init__(message)


class TransientPlatformError(PlatformError):
    transient = True


class TerminalPlatformError(PlatformError):
    transient = False


# ---------------------------------------------------------------------------------------------
# Release store
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Versioned(Generic[T]):
    """A value with the ETag it was read at (None: the row does not exist yet)."""

    value: T
    etag: str | None


@dataclass(frozen=True)
class ReleaseWrite:
    """One release row to insert (``etag`` None) or replace (If-Match ``etag``), with its audit rows.
    The release's entry in the due index moves with it, in the same transaction."""

    release: Release
    etag: str | None
    audit: tuple[AuditEntry, ...] = ()
    fingerprint: str | None = None
    # An insert whose writer already holds the id's claim for this site and plan (the store need
    # not claim it again).
    claimed: bool = False
    # Measurements to keep as evidence (numbered after ``release.measured_seq``); the store keeps
    # the newest ``MEASUREMENTS_KEPT`` of a release.
    measurements: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class StopSwitch:
    """The global stop: while on, no release starts or advances (rollbacks still run)."""

    on: bool
    reason: str
    by: str
    at: datetime


@dataclass(frozen=True)
class SiteView:
    """What admitting a new release reads: its site row, the release's own row if it was created
    already (a redelivery), and the site's active and queued releases."""

    site: Versioned[SiteState]
    existing: Versioned[Release] | None
    others: dict[str, Versioned[Release]]


@dataclass(frozen=True)
class IdClaim:
    release_id: str
    site_key: str
    fingerprint: str
    created_at: datetime


@dataclass(frozen=True)
class TokenUse:
    """A CI identity token spent on one event: ``token`` is ``<issuer>|<jti>``. A token proves who
    sent an event but does not sign its body, so each token may carry one release plan only."""

    token: str
    release_id: str
    fingerprint: str
    used_at: datetime


@dataclass(frozen=True)
class DueRef:
    """An unsettled release in the store's due index: when it next needs attention, and where its
    row is (``row``, opaque to everyone but the store), so that it loads in one round trip."""

    release_id: str
    site_key: str
    due_at: datetime
    row: str | None = None


@dataclass(frozen=True)
class ReleaseSummary:
    release_id: str
    site_key: str
    subscription_id: str
    resource_group: str
    site: str
    slot: str
    version: str
    phase: Phase
    paused: bool
    weight: float
    created_at: datetime
    updated_at: datetime | None


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    cursor: str | None = None


@dataclass(frozen=True)
class StoredAudit:
    seq: int
    entry: AuditEntry


@dataclass(frozen=True)
class RejectedEvent:
    received_at: datetime
    source: str
    message_id: str | None
    reason: str
    errors: list[tuple[str, str]]
    body: bytes
    details: dict[str, Any] = field(default_factory=dict)


# The newest measurements kept per release (each a row); older ones are counted, not kept.
MEASUREMENTS_KEPT = 200


@dataclass(frozen=True)
class StoredMeasurement:
    seq: int
    record: dict[str, Any]


class WorkQueue(Protocol):
    """The queue that spreads reconciles over workers: one message per due release."""

    def send(self, ref: DueRef, *, delay_seconds: float = 0.0) -> None:
        """Deliver ``ref`` to a worker after ``delay_seconds``. Raises on failure (callers log it:
        the due index still holds the release)."""
        ...


class ReleaseStore(Protocol):
    def claim_release_id(self, claim: IdClaim) -> IdClaim:
        """Reserve ``claim.release_id`` (idempotent). Returns the claim that holds the id, which may
        be an earlier one. Raises StoreUnavailable."""
        ...

    def claim_token(self, use: TokenUse) -> TokenUse:
        """Record that a CI token was spent on ``use.release_id`` (idempotent). Returns the use that
        holds the token, which may be an earlier one. Raises StoreUnavailable."""
        ...

    def load_site(self, site_key: str) -> Versioned[SiteState]: ...

    def load_release(self, release_id: str) -> Versioned[Release]:
        """Raises ReleaseNotFound."""
        ...

    def find_release(self, release_id: str) -> Versioned[Release] | None: ...

    def commit(
        self, site_key: str, writes: list[ReleaseWrite], site: Versioned[SiteState] | None = None
    ) -> dict[str, str]:
        """Write release rows, their audit rows and (optionally) the site row in one transaction.

        An inserted release is written only under an id claimed for the same site and plan. Each
        release's due-index entry (``lifecycle.attention_at``) is moved in the same transaction.
        Returns the new ETag of each release written. Raises ConcurrencyConflict (someone else
        wrote first), DuplicateRelease (an inserted release exists), ReleaseIdConflict (its id is
        claimed by another plan), EntityTooLarge, StoreUnavailable.
        """
        ...

    def load_admission(self, site_key: str, release_id: str, created_at: datetime) -> SiteView:
        """The site row, the release's own row (created at ``created_at``) and the site's active and
        queued releases: one round trip on a free site, two on a busy one."""
        ...

    def load_due(self, ref: DueRef) -> tuple[Versioned[Release], Versioned[SiteState]] | None:
        """The release ``ref`` names with its site row, in one round trip; None when it is gone."""
        ...

    def due_ref(self, release: Release) -> DueRef | None:
        """Where ``release`` sits in the due index once saved as it is (None: settled)."""
        ...

    def list_due(self, before: datetime, *, limit: int | None = None) -> list[DueRef]:
        """Unsettled releases due at or before ``before``, soonest first. Reads only those."""
        ...

    def ensure_due_index(self) -> int:
        """Index releases saved before the due index existed (once per store; then nearly free).
        Returns how many it indexed."""
        ...

    def list_active(self) -> list[DueRef]:
        """Every release not yet settled (final, site free, alerts delivered), soonest due first."""
        ...

    def list_releases(
        self,
        *,
        site_key: str | None = None,
        site: str | None = None,
        phase: Phase | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[ReleaseSummary]:
        """Raises ValueError for a cursor this store did not hand out."""
        ...

    def list_in_phase(self, phase: Phase, *, limit: int = 1000) -> list[Release]:
        """Releases of every site in ``phase`` (at most ``limit``), in no particular order."""
        ...

    def list_audit(self, release_id: str) -> list[StoredAudit]: ...

    def list_measurements(self, release_id: str) -> list[StoredMeasurement]:
        """The measurements kept for a release, newest first. Raises ReleaseNotFound."""
        ...

    def create_rollout(self, rollout: Any) -> bool:
        """Insert a rollout (a ``shared.domain.waves.Rollout``); False when its id exists already."""
        ...

    def load_rollout(self, rollout_id: str) -> Versioned[Any]:
        """Raises RolloutNotFound."""
        ...

    def save_rollout(self, rollout: Any, etag: str) -> None:
        """Replace it If-Match ``etag``. Raises ConcurrencyConflict."""
        ...

    def list_rollouts(self, *, active: bool | None = None, limit: int = 200) -> list[Any]:
        """Rollouts, newest first (``active``: only those not final, or only final ones)."""
        ...

    def load_stop(self) -> Versioned[StopSwitch | None]:
        """The global stop switch as last set (None: never set)."""
        ...

    def save_stop(self, switch: StopSwitch, etag: str | None) -> None:
        """Set the switch if it is still as read (``etag``; None: never set). Raises ConcurrencyConflict."""
        ...

    def list_sites(self) -> list[SiteState]:
        """Every site's row (the sites the controller has released to)."""
        ...

    def list_site_releases(self, site_key: str) -> list[Versioned[Release]]:
        """Every release of one site, whole, newest first (one partition read)."""
        ...

    def save_rejected(self, event: RejectedEvent) -> str: ...

    def list_rejected(self, day: str, limit: int = 1000) -> list[dict[str, Any]]:
        """The events rejected on ``day`` (``YYYY-MM-DD``), newest first, as stored (redacted)."""
        ...


# ---------------------------------------------------------------------------------------------
# App Service
# ---------------------------------------------------------------------------------------------


class SlotPlatform(Protocol):
    """The App Service operations the controller needs. Raise PlatformError subclasses."""

    def observe(self, target: Target, *, swap_token: str | None = None, probe_staging: bool = False) -> SlotObservation:
        """Which release runs where, the weight, the tracked swap; ``probe_staging`` also checks that
        the slot answers on its own host name (``staging_ready``)."""
        ...

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
        """Put the release on the slot: its artifact, exactly its app settings (keys an earlier
        release set and this one does not are removed; keys no release set are kept), stamped
        with its id, version and the keys it owns."""
        ...

    def set_weight(self, target: Target, weight: float) -> None: ...

    def begin_swap(self, target: Target) -> str:
        """Start swapping the slot with production; returns the continuation token."""
        ...

    def restore_staging(self, target: Target, last_good: LastGood) -> None: ...


class Validator(Protocol):
    def run_checks(self, host: str, checks: tuple[Check, ...]) -> tuple[CheckResult, ...]: ...


class Analyzer(Protocol):
    def measure(
        self,
        release: Release,
        slots: SlotObservation,
        providers: tuple[ProviderSpec, ...],
        window_start: datetime,
        now: datetime,
    ) -> tuple[Measurement, ...]:
        """Evidence from every measuring provider (http, azureMonitor) for the window."""
        ...

    def ask_gates(self, release: Release, slots: SlotObservation, stage: WebhookStage) -> tuple[GateResult, ...]:
        """The answer of every webhook gate configured for ``stage``."""
        ...


class Notifier(Protocol):
    """The log of warnings and errors, which alert rules watch."""

    def notify(self, release: Release, severity: str, message: str) -> None: ...


class Notifications(Protocol):
    """Configured sinks (chat webhooks, signed JSON webhooks) and what each wants to hear about."""

    def wanted(self, release: Release) -> frozenset[str]:
        """The events some sink wants for ``release``'s site (announced from the audit)."""
        ...

    def sinks(self, release: Release, alert: Alert) -> list[str]:
        """The names of the sinks that take ``alert`` for ``release``'s site."""
        ...

    def send(self, sink: str, release: Release, alert: Alert) -> None:
        """Deliver to one sink. Raises on any failure (refused, timed out, unreachable)."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...


class Authority(Protocol):
    """Where events come from, and the platform team's policy for what may be released where."""

    policy: Policy

    def origin(self, body: bytes, proof: EventProof, caller: Actor | None) -> Origin:
        """The event's verified origin. Raises ProofRefused."""
        ...
