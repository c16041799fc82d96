"""Analysis providers behind one port: each turns a window of the release's life into evidence.

- ``http``: the controller probes the new version (the slot's own host name) and the stable version
  (production, pinned with ``x-ms-routing-name=self``) itself; reports what it saw this tick.
- ``azureMonitor``: slot against production metrics over the same window, through ARM.
- ``webhook``: an external gate asked before traffic, at each step and before promotion.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import requests

from shared.adapters.probes import HttpProber, url_for
from shared.domain.model import (
    GateResult,
    Measurement,
    ProviderKind,
    ProviderSpec,
    Release,
    SlotObservation,
    VersionStats,
    WebhookStage,
)
from shared.ports import TerminalPlatformError

if TYPE_CHECKING:
    from shared.settings import Settings

PROBE_TIMEOUT_SECONDS = 5.0


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def probe_stats(prober: HttpProber, url: str, count: int, cookies: dict[str, str] | None = None) -> VersionStats:
    """``count`` GETs: errors are 5xx answers or no answer; latency is the p95 of answered requests."""
    latencies: list[float] = []
    errors = 0
    for _ in range(count):
        result = prober.get(url, timeout=PROBE_TIMEOUT_SECONDS, cookies=cookies)
        if result.status is None or result.status >= 500:
            errors += 1
        if result.status is not None:
            latencies.append(result.latency_ms)
    return VersionStats(requests=count, errors=errors, latency_ms=percentile(latencies, 95))


class HttpProvider:
    kind = ProviderKind.HTTP

    def __init__(self, prober: HttpProber):
        self.prober = prober

    def measure(
        self, release: Release, slots: SlotObservation, spec: ProviderSpec, window_start: datetime, now: datetime
    ) -> Measurement:
        canary_host = slots.staging_host
        stable_host = slots.production_host
        promoted = slots.production_release == release.id
        if promoted:
            # Guard window: the new version is production; nothing else takes traffic to compare.
            canary = probe_stats(
                self.prober,
                url_for(stable_host or "", spec.path),
                spec.requests_per_tick,
                {"x-ms-routing-name": "self"},
            )
            return Measurement(ProviderKind.HTTP, canary, VersionStats(), "p95", cumulative=False)
        canary = probe_stats(self.prober, url_for(canary_host or "", spec.path), spec.requests_per_tick)
        stable = probe_stats(
            self.prober, url_for(stable_host or "", spec.path), spec.requests_per_tick, {"x-ms-routing-name": "self"}
        )
        return Measurement(ProviderKind.HTTP, canary, stable, "p95", cumulative=False)


class AzureMonitorProvider:
    """Slot against production from Azure Monitor (Requests, Http5xx, HttpResponseTime) over the
    same window, read through ARM. Totals since the step began, so each tick replaces the last.
    Azure Monitor's response time is an average (it has no percentiles)."""

    kind = ProviderKind.AZURE_MONITOR

    def __init__(self, platform: Any):
        self.platform = platform

    def measure(
        self, release: Release, slots: SlotObservation, spec: ProviderSpec, window_start: datetime, now: datetime
    ) -> Measurement:
        target = release.spec.target
        if slots.production_release == release.id:
            # Guard window: the new version is production; the old one in the slot takes no traffic.
            canary = self.platform.read_metrics(target, production=True, start=window_start, end=now)
            return Measurement(ProviderKind.AZURE_MONITOR, canary, VersionStats(), "average", cumulative=True)
        canary = self.platform.read_metrics(target, production=False, start=window_start, end=now)
        stable = self.platform.read_metrics(target, production=True, start=window_start, end=now)
        return Measurement(ProviderKind.AZURE_MONITOR, canary, stable, "average", cumulative=True)


class WebhookGate:
    """An external gate: POST the release's context, HMAC-SHA256 signed with a WEBHOOK_SECRET_*
    setting (header ``X-Release-Signature-256: sha256=<hex>``). 2xx passes; any other answer, an
    error or a timeout fails."""

    kind = ProviderKind.WEBHOOK

    def __init__(self, secrets: Mapping[str, str], *, ca_bundle: str | None = None):
        self.secrets = secrets
        self.session = requests.Session()
        self.session.verify = ca_bundle or True
        self.session.trust_env = False

    def ask(self, release: Release, slots: SlotObservation, spec: ProviderSpec, stage: WebhookStage) -> GateResult:
        r = release
        steps = r.spec.strategy.steps
        payload = {
            "releaseId": r.id,
            "version": r.spec.version,
            "stage": stage.value,
            "phase": r.phase.value,
            "step": {"index": r.step + 1, "of": len(steps)} if r.step >= 0 and steps else None,
            "weight": r.weight,
            "target": {
                "subscriptionId": r.spec.target.subscription_id,
                "resourceGroup": r.spec.target.resource_group,
                "site": r.spec.target.site,
                "slot": r.spec.target.slot,
            },
            "stagingHost": slots.staging_host,
            "commit": r.spec.metadata.commit,
            "sentAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Release-Controller-Stage": stage.value}
        if spec.secret_setting:
            secret = self.secrets.get(spec.secret_setting)
            if not secret:
                return GateResult(self.kind, False, f"the controller has no app setting {spec.secret_setting}", stage)
            signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Release-Signature-256"] = f"sha256={signature}"
        url = spec.url or ""
        try:
            response = self.session.post(url, data=body, headers=headers, timeout=spec.timeout_seconds)
        except requests.Timeout:
            return GateResult(self.kind, False, f"{url} did not answer within {spec.timeout_seconds:g}s", stage)
        except requests.RequestException as exc:
            return GateResult(self.kind, False, f"{url} could not be reached ({type(exc).__name__})", stage)
        answer = response.text[:300].strip()
        if 200 <= response.status_code < 300:
            return GateResult(self.kind, True, f"{url} answered {response.status_code} {answer}".strip(), stage)
        return GateResult(self.kind, False, f"{url} answered {response.status_code} {answer}".strip(), stage)


class ProviderAnalyzer:
    """Runs every provider the release asks for; a provider this deployment cannot run is an error,
    never a silent pass."""

    def __init__(self, providers: dict[ProviderKind, Any]):
        self.providers = providers

    @classmethod
    def from_settings(cls, settings: Settings, platform: Any) -> ProviderAnalyzer:
        prober = HttpProber(settings.probe_ca_bundle)
        return cls(
            {
                ProviderKind.HTTP: HttpProvider(prober),
                ProviderKind.AZURE_MONITOR: AzureMonitorProvider(platform),
                ProviderKind.WEBHOOK: WebhookGate(settings.webhook_secrets, ca_bundle=settings.probe_ca_bundle),
            }
        )

    def _provider(self, kind: ProviderKind) -> Any:
        provider = self.providers.get(kind)
        if provider is None:
            raise TerminalPlatformError(f"the {kind} analysis provider is not available in this deployment")
        return provider

    def measure(
        self,
        release: Release,
        slots: SlotObservation,
        providers: tuple[ProviderSpec, ...],
        window_start: datetime,
        now: datetime,
    ) -> tuple[Measurement, ...]:
        return tuple(
            self._provider(spec.kind).measure(release, slots, spec, window_start, now)
            for spec in providers
            if spec.kind is not ProviderKind.WEBHOOK
        )

    def ask_gates(self, release: Release, slots: SlotObservation, stage: WebhookStage) -> tuple[GateResult, ...]:
        return tuple(
            self._provider(ProviderKind.WEBHOOK).ask(release, slots, spec, stage)
            for spec in release.spec.analysis.providers
            if spec.kind is ProviderKind.WEBHOOK and stage in spec.stages
        )
