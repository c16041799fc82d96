"""The release, its plan and its lifecycle, as immutable values.

Everything here is plain data: the state machine in ``machine.py`` turns one value into the next.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from shared.domain.windows import Schedule


class Phase(StrEnum):
    PENDING = "pending"
    DEPLOYING = "deploying"
    VALIDATING = "validating"
    AWAITING_APPROVAL = "awaitingApproval"
    SHIFTING = "shifting"
    PROMOTING = "promoting"
    GUARDING = "guarding"
    SUCCEEDED = "succeeded"
    ROLLING_BACK = "rollingBack"
    ROLLED_BACK = "rolledBack"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_PHASES

    @property
    def meaning(self) -> str:
        return PHASE_MEANINGS[self]


FINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED, Phase.CANCELLED})

PHASE_MEANINGS: dict[Phase, str] = {
    Phase.PENDING: "accepted; waiting for its turn on the site",
    Phase.DEPLOYING: "artifact and app settings going onto the staging slot; slot warming up",
    Phase.VALIDATING: "smoke checks against the staging slot's own host name, before any user traffic",
    Phase.AWAITING_APPROVAL: "waiting for a person to approve (before traffic or before promotion)",
    Phase.SHIFTING: "canary: a step's weight is applied, verified and baking under analysis",
    Phase.PROMOTING: "swapping staging into production; routing rules cleared",
    Phase.GUARDING: "promoted; watching production while the previous version stays warm in staging",
    Phase.SUCCEEDED: "final: the new version serves production",
    Phase.ROLLING_BACK: "taking the new version out of traffic (weight 0, or swap back)",
    Phase.ROLLED_BACK: "final: production serves the previous version; the reason is recorded",
    Phase.FAILED: "final: the controller could not restore a known-good state; a person must act",
    Phase.CANCELLED: "final: superseded or aborted before any user traffic reached it",
}

# Every phase change decide() or an override may make. Anything else is a bug.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.PENDING: frozenset({Phase.DEPLOYING, Phase.CANCELLED}),
    Phase.DEPLOYING: frozenset({Phase.VALIDATING, Phase.ROLLING_BACK, Phase.CANCELLED}),
    Phase.VALIDATING: frozenset(
        {Phase.AWAITING_APPROVAL, Phase.SHIFTING, Phase.PROMOTING, Phase.ROLLING_BACK, Phase.CANCELLED}
    ),
    Phase.AWAITING_APPROVAL: frozenset({Phase.SHIFTING, Phase.PROMOTING, Phase.ROLLING_BACK, Phase.CANCELLED}),
    Phase.SHIFTING: frozenset({Phase.SHIFTING, Phase.AWAITING_APPROVAL, Phase.PROMOTING, Phase.ROLLING_BACK}),
    Phase.PROMOTING: frozenset({Phase.GUARDING, Phase.SUCCEEDED, Phase.ROLLING_BACK}),
    Phase.GUARDING: frozenset({Phase.SUCCEEDED, Phase.ROLLING_BACK}),
    Phase.ROLLING_BACK: frozenset({Phase.ROLLED_BACK, Phase.FAILED}),
    Phase.SUCCEEDED: frozenset(),
    Phase.ROLLED_BACK: frozenset(),
    Phase.FAILED: frozenset(),
    Phase.CANCELLED: frozenset(),
}


class StrategyKind(StrEnum):
    CANARY = "canary"
    BLUE_GREEN = "blueGreen"


class Promotion(StrEnum):
    AUTO = "auto"
    MANUAL = "manual"


class Gate(StrEnum):
    BEFORE_TRAFFIC = "beforeTraffic"
    BEFORE_PROMOTION = "beforePromotion"


class OverrideKind(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    PROMOTE_FULL = "promote-full"
    ROLLBACK = "rollback"
    APPROVE = "approve"
    RETRY = "retry"
    RELEASE_SITE = "release-site"
    # An admin lets one release ignore its site's windows and freezes (not the global stop).
    IGNORE_SCHEDULE = "ignore-schedule"


class ProviderKind(StrEnum):
    HTTP = "http"
    AZURE_MONITOR = "azureMonitor"
    WEBHOOK = "webhook"


class WebhookStage(StrEnum):
    BEFORE_TRAFFIC = "beforeTraffic"
    EACH_STEP = "eachStep"
    BEFORE_PROMOTION = "beforePromotion"


CONTROLLER = "controller"


class ActorKind(StrEnum):
    PERSON = "person"  # signed in through App Service authentication (Entra ID)
    KEY = "key"  # a function key alone (key-only mode, for local development)
    CI = "ci"  # a signed event: an HMAC key id, or a CI workload-identity token


class Role(StrEnum):
    READER = "reader"
    SUBMITTER = "submitter"
    OPERATOR = "operator"
    APPROVER = "approver"
    ADMIN = "admin"


@dataclass(frozen=True)
class Actor:
    """Who acts, compared by ``id`` (stable: Entra tenant and object id, a key id, a CI identity),
    shown by ``name``."""

    id: str
    name: str
    kind: ActorKind = ActorKind.PERSON
    roles: frozenset[Role] = frozenset()
    groups: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        return self.name if self.name == self.id else f"{self.name} ({self.id})"


@dataclass(frozen=True)
class ApprovalRule:
    """Who may approve at a gate: a role, and optionally membership of a group (object id)."""

    role: Role = Role.APPROVER
    group: str | None = None


@dataclass(frozen=True)
class EffectivePolicy:
    """What the platform team's policy made of a release, recorded with it."""

    rule: str
    digest: str
    before_traffic: ApprovalRule | None = None
    before_promotion: ApprovalRule | None = None
    two_person: bool = True
    changes: tuple[str, ...] = ()
    # What a rollback quarantines: "site" (the version on this site), "app" (on every site of the
    # same policy rule) or "off".
    quarantine: str = "site"
    # When the site's releases may start and advance (its windows and freezes, as admitted).
    schedule: Schedule = field(default_factory=Schedule)


# ---------------------------------------------------------------------------------------------
# The plan: what CI asked for (release event v1, normalized)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    subscription_id: str
    resource_group: str
    site: str
    slot: str = "staging"

    @property
    def site_key(self) -> str:
        """Identifies the site (not the slot): one active release per site."""
        return f"{self.subscription_id}~{self.resource_group}~{self.site}".lower()

    def describe(self) -> str:
        return f"{self.resource_group}/{self.site} (slot {self.slot})"


@dataclass(frozen=True)
class Artifact:
    kind: Literal["container", "package"]
    ref: str


@dataclass(frozen=True)
class Step:
    weight: float
    bake_seconds: int


@dataclass(frozen=True)
class Strategy:
    kind: StrategyKind
    steps: tuple[Step, ...] = ()
    guard_seconds: int = 0


@dataclass(frozen=True)
class Check:
    path: str = "/"
    expect_status: int = 200
    body_contains: str | None = None
    timeout_seconds: float = 5.0


@dataclass(frozen=True)
class Validation:
    checks: tuple[Check, ...] = (Check(),)
    consecutive_successes: int = 3
    failure_limit: int = 3
    deadline_seconds: int = 600


@dataclass(frozen=True)
class ProviderSpec:
    kind: ProviderKind
    path: str = "/"
    requests_per_tick: int = 20
    # webhook: the gate is named by the event; its URL, key and reachable networks come from the
    # platform team's policy when the release is admitted.
    gate: str | None = None
    url: str | None = None
    secret_setting: str | None = None
    allow_networks: tuple[str, ...] = ()
    stages: tuple[WebhookStage, ...] = ()
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class AnalysisSettings:
    providers: tuple[ProviderSpec, ...] = (ProviderSpec(ProviderKind.HTTP),)
    max_error_rate: float = 0.05
    max_latency_ms: float = 1000.0
    relative_to_stable: bool = True
    max_error_rate_increase: float = 0.01
    max_latency_increase_ms: float = 200.0
    min_requests: int = 50
    max_bake_extension_seconds: int = 600
    failure_limit: int = 0
    consecutive_successes: int = 1
    progress_deadline_seconds: int = 1800
    # How often a baking release is measured (and so woken): analysis does not run at every tick.
    interval_seconds: int = 60
    # "advisory": measured and judged like any other, but the controller only records what it
    # would have done (roll back, hold, pause); the plan's bakes alone move the release on.
    mode: str = "enforce"

    @property
    def advisory(self) -> bool:
        return self.mode == "advisory"


@dataclass(frozen=True)
class Metadata:
    commit: str | None = None
    pipeline_url: str | None = None
    requested_by: str | None = None


@dataclass(frozen=True)
class ReleaseSpec:
    release_id: str
    target: Target
    version: str
    artifact: Artifact
    strategy: Strategy
    app_settings: dict[str, str] = field(default_factory=dict)
    promotion: Promotion = Promotion.AUTO
    approve_before_traffic: bool = False
    validation: Validation = Validation()
    analysis: AnalysisSettings = AnalysisSettings()
    metadata: Metadata = Metadata()
    retry_of: str | None = None
    # A redeploy of another site's release (disaster recovery): that release's id.
    redeploy_of: str | None = None

    @property
    def is_canary(self) -> bool:
        return self.strategy.kind is StrategyKind.CANARY


# ---------------------------------------------------------------------------------------------
# Observations: what the service saw before deciding
# ---------------------------------------------------------------------------------------------


class SwapStatus(StrEnum):
    IN_PROGRESS = "inProgress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # The status URL could not be read this time (429, 5xx, no answer): what the slots show decides.
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SwapState:
    status: SwapStatus
    message: str = ""


@dataclass(frozen=True)
class SlotObservation:
    """What the platform reports about the site's production and staging slots."""

    production_release: str | None
    staging_release: str | None
    staging_ready: bool
    weight: float
    staging_host: str | None = None
    production_host: str | None = None
    swap: SwapState | None = None


@dataclass(frozen=True)
class CheckResult:
    check: Check
    passed: bool
    status: int | None = None
    latency_ms: float | None = None
    detail: str = ""

    def describe(self) -> str:
        got = f"HTTP {self.status}" if self.status is not None else "no response"
        verdict = "passed" if self.passed else "FAILED"
        extra = f" ({self.detail})" if self.detail else ""
        return f"GET {self.check.path} expected {self.check.expect_status}, got {got}: {verdict}{extra}"


@dataclass(frozen=True)
class VersionStats:
    """Requests seen by one version over a window. Latency is the provider's statistic."""

    requests: int = 0
    errors: int = 0
    latency_ms: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass(frozen=True)
class Measurement:
    """One provider's evidence for the current window: canary (new) against stable (production)."""

    provider: ProviderKind
    canary: VersionStats
    stable: VersionStats
    latency_statistic: str = "p95"
    # delta: counts since the previous measurement (added up by the core);
    # window: totals since the step started (replace what was held).
    cumulative: bool = True


@dataclass(frozen=True)
class GateResult:
    """An external gate's answer (the webhook provider)."""

    provider: ProviderKind
    passed: bool
    detail: str = ""
    stage: WebhookStage = WebhookStage.EACH_STEP


@dataclass(frozen=True)
class LastGood:
    release_id: str
    version: str
    artifact: Artifact
    app_settings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Quarantine:
    """A version rolled back on a site: a new release of it there is refused until an admin lifts it."""

    version: str
    release_id: str  # the release that was rolled back
    reason: str
    at: datetime
    rule: str = ""  # the policy rule it was released under (the "app", for app-wide quarantine)


# A site keeps at most this many quarantined versions (the oldest are forgotten).
QUARANTINE_KEPT = 50


@dataclass(frozen=True)
class SiteState:
    site_key: str
    active: str | None = None
    queued: str | None = None
    last_good: LastGood | None = None
    quarantined: tuple[Quarantine, ...] = ()

    def quarantine_of(self, version: str) -> Quarantine | None:
        return next((q for q in self.quarantined if q.version == version), None)


@dataclass(frozen=True)
class Observation:
    site: SiteState
    slots: SlotObservation | None = None
    checks: tuple[CheckResult, ...] | None = None
    measurements: tuple[Measurement, ...] | None = None
    gates: tuple[GateResult, ...] | None = None
    # The global stop switch, when an admin has pulled it: why (nothing advances; rollbacks run).
    stop: str | None = None


# ---------------------------------------------------------------------------------------------
# The release: plan + progress
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationProgress:
    rounds: int = 0
    streak: int = 0
    failures: int = 0


@dataclass(frozen=True)
class Evidence:
    """Everything one provider has seen during the current step (or guard window)."""

    provider: ProviderKind
    canary: VersionStats = VersionStats()
    stable: VersionStats = VersionStats()
    latency_statistic: str = "p95"


@dataclass(frozen=True)
class AnalysisProgress:
    """Evidence and verdict counters of the current step (or guard window)."""

    evidence: tuple[Evidence, ...] = ()
    successes: int = 0
    failures: int = 0
    extension_until: datetime | None = None
    last_outcome: str | None = None


@dataclass(frozen=True)
class SwapProgress:
    """A swap claimed by a saved state. ``token`` is the platform's continuation token, recorded once
    the swap has started; a claim without one is a swap that may or may not have started."""

    purpose: Literal["promote", "rollback"]
    claimed_at: datetime
    token: str | None = None


@dataclass(frozen=True)
class Alert:
    """A notification recorded with the state and kept until it was delivered (at least once)."""

    seq: int
    severity: Literal["info", "warning", "error"]
    message: str
    at: datetime
    # What happened (started, step, paused, approval, rolledBack, succeeded, failed, warning), and
    # its facts for the notification (the failing measurement's numbers for a rollback).
    event: str = "warning"
    details: Mapping[str, Any] = field(default_factory=dict)
    # Delivery: the sinks that have it, attempts that failed, and when to try again.
    delivered: tuple[str, ...] = ()
    attempts: int = 0
    retry_at: datetime | None = None


@dataclass(frozen=True)
class Release:
    spec: ReleaseSpec
    created_at: datetime
    phase: Phase = Phase.PENDING
    phase_since: datetime | None = None
    updated_at: datetime | None = None
    paused: bool = False
    pause_reason: str | None = None
    inconclusive: bool = False
    step: int = -1
    step_started_at: datetime | None = None
    weight: float = 0.0
    gate: Gate | None = None
    validation: ValidationProgress = ValidationProgress()
    analysis: AnalysisProgress = AnalysisProgress()
    swap: SwapProgress | None = None
    gate_pending: WebhookStage | None = None
    gates_passed: tuple[WebhookStage, ...] = ()
    deploy_attempts: int = 0
    transient_failures: int = 0
    failing_since: datetime | None = None
    # Sticky facts: set once user traffic (a step's weight) or production (a claimed promotion
    # swap) may have reached the new version, never cleared.
    reached_users: bool = False
    reached_production: bool = False
    # A failed release keeps its site until its slots are seen clean or a person releases it.
    holds_site: bool = False
    outbox: tuple[Alert, ...] = ()
    alerts_raised: int = 0
    reason: str | None = None
    retried_as: str | None = None
    redeployed_as: tuple[str, ...] = ()  # releases of this one's plan on other sites
    # Held by the deployment schedule (a window, a freeze, the global stop): why, and until when.
    held: str | None = None
    held_until: datetime | None = None
    # An admin let this release ignore its windows and freezes (not the global stop): who and why.
    schedule_override: str | None = None
    superseded_by: str | None = None
    next_check_at: datetime | None = None
    finished_at: datetime | None = None
    # Who asked for it — the verified origin of its event first, then the person who sent it over
    # HTTP if that is someone else — and what the release policy made of it: set at admission.
    submitters: tuple[Actor, ...] = ()
    policy: EffectivePolicy | None = None
    # How many audit entries are stored for this release; kept by the store, never by decide().
    audit_seq: int = 0
    # When the store's due index holds it (``lifecycle.attention_at`` as last saved); kept by the
    # store, never by decide(), so that a save can move the entry it replaces.
    indexed_due: datetime | None = field(default=None, compare=False)
    # How many measurements were ever kept for this release; kept by the store, never by decide().
    measured_seq: int = 0
    # Every measurement's verdict, counted (the store keeps only the newest measurements).
    verdicts: tuple[tuple[str, int], ...] = ()

    @property
    def id(self) -> str:
        return self.spec.release_id

    @property
    def site_key(self) -> str:
        return self.spec.target.site_key

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.spec.strategy.steps

    @property
    def is_final(self) -> bool:
        return self.phase.is_final

    @property
    def has_reached_users(self) -> bool:
        """True once any user request may have been served by the new version."""
        return (
            self.reached_users
            or self.reached_production
            or self.weight > 0
            or self.step >= 0
            or self.swap is not None
            or self.phase in (Phase.GUARDING, Phase.SUCCEEDED)
        )

    @property
    def frees_site(self) -> bool:
        """Final, and no longer keeping the site from the next release."""
        return self.phase.is_final and not self.holds_site

    @property
    def settled(self) -> bool:
        """Nothing will ever happen to it again: final, site free, every alert delivered."""
        return self.frees_site and not self.outbox


# ---------------------------------------------------------------------------------------------
# Decisions: what to do and what to record
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Warmup:
    """What App Service requests on the slot before a swap switches it in, and the statuses that
    count as warm (WEBSITE_SWAP_WARMUP_PING_PATH / _STATUSES)."""

    path: str
    statuses: tuple[int, ...]


@dataclass(frozen=True)
class DeployToSlot:
    release_id: str
    version: str
    artifact: Artifact
    app_settings: dict[str, str]
    warmup: Warmup | None = None


@dataclass(frozen=True)
class SetWeight:
    weight: float


@dataclass(frozen=True)
class BeginSwap:
    """Start the swap the decision claimed. Unlike every other effect it is not idempotent, so the
    service applies it only after the decision (and so the claim) is saved."""

    purpose: Literal["promote", "rollback"]


@dataclass(frozen=True)
class RestoreStaging:
    """Put the last good release back on the staging slot (visitors pinned there see good code)."""

    last_good: LastGood


Effect = DeployToSlot | SetWeight | BeginSwap | RestoreStaging


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    message: str
    phase_from: Phase
    phase_to: Phase
    weight: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    release: Release
    effects: tuple[Effect, ...] = ()
    audit: tuple[AuditEntry, ...] = ()
    # The release stopped short of an action its stored state does not allow yet (raising traffic):
    # save this decision, then decide again at once.
    again: bool = False
    # Every measurement this decision judged (one per provider), kept with the release as evidence.
    measurements: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Override:
    kind: OverrideKind
    actor: Actor
    reason: str
