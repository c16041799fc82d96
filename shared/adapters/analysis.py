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
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

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
from shared.domain.policy import address_allowed
from shared.ports import BudgetSpent, TerminalPlatformError

if TYPE_CHECKING:
    from shared.settings import Settings

PROBE_TIMEOUT_SECONDS = 5.0
# At most this many requests per version per provider per tick, whatever the event asks.
MAX_PROBES_PER_TICK = 100
MAX_GATE_ANSWER_BYTES = 16 * 1024
MAX_GATE_REASON = 200


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def probe_stats(prober: HttpProber, url: str, count: int, cookies: dict[str, str] | None = None) -> VersionStats:
    """Up to ``count`` GETs (capped): errors are 5xx answers or no answer; latency is the p95 of
    answered requests. When the reconcile's budget runs out, what was seen so far counts."""
    latencies: list[float] = []
    errors = 0
    done = 0
    for _ in range(min(count, MAX_PROBES_PER_TICK)):
        try:
            result = prober.get(url, timeout=PROBE_TIMEOUT_SECONDS, cookies=cookies)
        except BudgetSpent:
            break
        done += 1
        if result.status is None or result.status >= 500:
            errors += 1
        if result.status is not None:
            latencies.append(result.latency_ms)
    return VersionStats(requests=done, errors=errors, latency_ms=percentile(latencies, 95))


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
    """An external gate, named in the release policy: POST the release's context, HMAC-SHA256 signed
    with the gate's key (header ``X-Release-Signature-256: sha256=<hex>``); 2xx passes, anything
    else, an error or a timeout fails.

    Outbound requests are safe: https only; the host is resolved first and refused when it is
    loopback, link-local or private unless the policy names that range for the gate; the
    connection goes to the address that was checked (no second lookup to rebind); redirects are
    never followed (the signature would go with them); the answer is read with a size cap, and
    only its status and a short, cleaned ``reason`` from a JSON answer reach the audit."""

    kind = ProviderKind.WEBHOOK

    def __init__(self, secrets: Mapping[str, str], *, ca_bundle: str | None = None):
        self.secrets = secrets
        self.ca_bundle = ca_bundle

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
        name = spec.gate or "gate"
        if spec.secret_setting:
            secret = self.secrets.get(spec.secret_setting)
            if not secret:
                return GateResult(self.kind, False, f"gate {name}: the controller has no key for it", stage)
            signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Release-Signature-256"] = f"sha256={signature}"
        try:
            status, answer = self._post(spec, body, headers)
        except GateRefused as refused:
            return GateResult(self.kind, False, f"gate {name}: {refused}", stage)
        reason = _reason(answer)
        said = f"gate {name} answered {status}" + (f": {reason}" if reason else "")
        return GateResult(self.kind, 200 <= status < 300, said, stage)

    def _post(self, spec: ProviderSpec, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        import urllib3

        url = urlsplit(spec.url or "")
        if url.scheme != "https" or not url.hostname:
            raise GateRefused("its URL is not https")
        port = url.port or 443
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(url.hostname, port, proto=socket.IPPROTO_TCP)}
        except (OSError, UnicodeError):
            raise GateRefused(f"{url.hostname} does not resolve") from None
        refused = sorted(a for a in addresses if not address_allowed(a, spec.allow_networks))
        if refused or not addresses:
            raise GateRefused(
                f"{url.hostname} resolves to {', '.join(refused) or 'nothing'}: a loopback, link-local or private "
                "address the policy does not allow for this gate"
            )
        address = sorted(addresses)[0]
        pool = urllib3.HTTPSConnectionPool(
            address,
            port,
            server_hostname=url.hostname,
            assert_hostname=url.hostname,
            cert_reqs="CERT_REQUIRED",
            ca_certs=self.ca_bundle or certifi_bundle(),
            timeout=urllib3.Timeout(connect=spec.timeout_seconds, read=spec.timeout_seconds),
            retries=False,
        )
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        try:
            response = pool.urlopen(
                "POST",
                path,
                body=body,
                headers={**headers, "Host": url.netloc},
                redirect=False,
                preload_content=False,
            )
            answer = response.read(MAX_GATE_ANSWER_BYTES + 1, decode_content=True)
            response.release_conn()
        except urllib3.exceptions.TimeoutError:
            raise GateRefused(f"{url.hostname} did not answer within {spec.timeout_seconds:g}s") from None
        except urllib3.exceptions.HTTPError as exc:
            raise GateRefused(f"{url.hostname} could not be reached ({type(exc).__name__})") from None
        finally:
            pool.close()
        if 300 <= response.status < 400:
            raise GateRefused(f"{url.hostname} answered a redirect ({response.status}); redirects are not followed")
        return response.status, answer[:MAX_GATE_ANSWER_BYTES]


class GateRefused(Exception):
    """The gate was not asked, or gave no answer to use."""


def certifi_bundle() -> str | None:
    try:
        import certifi

        return certifi.where()
    except ImportError:  # pragma: no cover - requests brings certifi
        return None


def _reason(answer: bytes) -> str:
    """A short, printable ``reason`` from a JSON answer; nothing else of the body is kept."""
    try:
        doc = json.loads(answer)
    except (ValueError, RecursionError):
        return ""
    reason = doc.get("reason") if isinstance(doc, dict) else None
    if not isinstance(reason, str):
        return ""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in reason).strip()
    return cleaned[:MAX_GATE_REASON]


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
