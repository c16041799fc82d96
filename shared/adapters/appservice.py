"""The SlotPlatform on Azure App Service, through azure-mgmt-web 11.x.

The same code runs in Azure and against the local emulator: only the ARM endpoint, the credential
and the CA to trust differ (settings ARM_ENDPOINT, ARM_SCOPE, ARM_CA_BUNDLE).

- Deploy: read the slot's kind and stack first and refuse, with what to change, what cannot be done
  safely (a sidecar app, a package on a stack that cannot run one, a setting that would not move
  with the swap). Then the image (``linuxFxVersion`` or ``windowsFxVersion``, PATCH) or the package
  (``WEBSITE_RUN_FROM_PACKAGE``), then exactly the release's app settings (``slot_settings``) in one
  PUT, which restarts the app; readiness is the slot answering on its own host name.
- Weight: a ramp-up rule on the production site pointing at the slot's ``defaultHostName`` as ARM
  reports it (never built), verified by reading it back; weight 0 removes the rule.
- Swap: ``begin_swap_slot`` sends the request; the continuation token records the status URL the
  platform answered with (``Location``, or ``Azure-AsyncOperation``), and each later tick makes
  exactly one GET of it, reading every outcome itself: still running, done, failed with the
  platform's message, or a status request that failed (transient).
- Errors: ARM's ``{"error": {...}}`` and App Service's ``{"Code", "Message"}`` bodies are both read;
  408/409/423/429/5xx and connection problems are transient (429 and 503 with the Retry-After the
  platform asked for); 401/403/404, a management lock (409 ScopeLocked) and other refusals are
  terminal, with a message that says what to fix.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.policies import RetryPolicy
from azure.core.polling import PollingMethod

from shared.adapters import slot_settings
from shared.adapters.probes import HttpProber, url_for
from shared.domain.model import (
    Artifact,
    LastGood,
    SlotObservation,
    SwapState,
    SwapStatus,
    Target,
    VersionStats,
    Warmup,
)
from shared.ports import PlatformError, TerminalPlatformError, TransientPlatformError

if TYPE_CHECKING:
    from azure.core.rest import HttpResponse
    from azure.mgmt.web import WebSiteManagementClient

    from shared.settings import Settings

log = logging.getLogger("release_controller.appservice")
T = TypeVar("T")

METRICS_API_VERSION = "2024-02-01"
TRANSIENT_STATUS = frozenset({408, 409, 423, 429, 500, 502, 503, 504})
RBAC_HINT = "grant the controller's managed identity 'Website Contributor' on the site (README: RBAC)"
# Retry-After longer than this is not waited out inside a call: the release is retried that much
# later instead (a reconcile never sleeps for minutes).
MAX_IN_CALL_RETRY_AFTER = 5.0
DEFAULT_METRICS_DELAY = timedelta(minutes=3)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def error_details(response: HttpResponse | None, exc: HttpResponseError | None = None) -> tuple[str, str]:
    """(code, message) from ARM's ``{"error": {"code", "message"}}`` or App Service's own
    ``{"Code", "Message", "Details": [...]}``; empty strings when the body says nothing."""
    if exc is not None and exc.error is not None and (exc.error.code or exc.error.message):
        return exc.error.code or "", exc.error.message or ""
    try:
        doc = response.json() if response is not None else None
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict):
        return "", ""
    inner = doc.get("error") if isinstance(doc.get("error"), dict) else doc
    code = inner.get("code") or inner.get("Code") or ""
    message = inner.get("message") or inner.get("Message") or ""
    if not message:
        for detail in inner.get("Details") or inner.get("details") or []:
            if isinstance(detail, dict) and (detail.get("Message") or detail.get("message")):
                message = detail.get("Message") or detail.get("message")
                break
    return str(code), str(message)


def _retry_after(response: HttpResponse | None) -> float | None:
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value else None
    except ValueError:
        return None


def classify_status(
    status: int, code: str, detail: str, what: str, target: Target, *, retry_after: float | None = None
) -> PlatformError:
    """Transient (retry later, state unchanged) or terminal (rollback path), with a useful message."""
    where = f"{target.resource_group}/{target.site}"
    detail = (detail.splitlines() or [""])[0][:400]
    if status == 401:
        if code == "ExpiredAuthenticationToken":
            return TransientPlatformError(f"{what} on {where}: ARM found the token expired; retrying with a new one")
        return TerminalPlatformError(
            f"{what} on {where}: ARM rejected the controller's token (401 {code}: {detail}); check the managed "
            f"identity (AZURE_CLIENT_ID) and ARM_SCOPE",
            status=status,
            code=code,
        )
    if status == 403:
        return TerminalPlatformError(
            f"{what} on {where}: the controller is not allowed (403 {code}: {detail}); {RBAC_HINT}",
            status=status,
            code=code,
        )
    if status == 404:
        return TerminalPlatformError(
            f"{what}: site {where} or slot {target.slot} was not found (404 {code}); check the release's target",
            status=status,
            code=code,
        )
    if status == 409 and code == "ScopeLocked":
        return TerminalPlatformError(
            f"{what} on {where}: a management lock forbids changes (409 ScopeLocked: {detail}); remove the lock "
            "(az lock list --resource-group ...) or exempt the site, then retry the release",
            status=status,
            code=code,
        )
    if status in TRANSIENT_STATUS:
        after = f" (retry after {retry_after:g}s)" if retry_after else ""
        return TransientPlatformError(
            f"{what} on {where}: ARM answered {status} {code}: {detail}{after}",
            status=status,
            code=code,
            retry_after=retry_after,
        )
    return TerminalPlatformError(
        f"{what} on {where}: ARM refused the request ({status} {code}): {detail}", status=status, code=code
    )


def classify(exc: Exception, what: str, target: Target) -> PlatformError:
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        code, message = error_details(exc.response, exc)
        return classify_status(
            exc.status_code,
            code,
            message or exc.reason or str(exc),
            what,
            target,
            retry_after=_retry_after(exc.response),
        )
    if isinstance(exc, ClientAuthenticationError):
        return TransientPlatformError(f"{what}: could not get a token for ARM: {str(exc).splitlines()[0][:300]}")
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return TransientPlatformError(
            f"{what} on {target.resource_group}/{target.site}: ARM could not be reached or did not answer in time "
            f"({type(exc).__name__})"
        )
    raise exc


class BoundedRetryPolicy(RetryPolicy):
    """azure-core's retries, but a Retry-After longer than a few seconds ends the call instead of
    sleeping in it: the controller retries the release that much later."""

    def is_retry(self, settings: dict[str, Any], response: Any) -> bool:
        after = self.get_retry_after(response)
        if after is not None and after > MAX_IN_CALL_RETRY_AFTER:
            return False
        return super().is_retry(settings, response)


# ---------------------------------------------------------------------------------------------
# Swaps
# ---------------------------------------------------------------------------------------------


class _SendOnly(PollingMethod):  # type: ignore[type-arg]
    """Let begin_swap_slot send the request, keep the answer, never poll (nothing waits on it)."""

    def initialize(self, client: Any, initial_response: Any, deserialization_callback: Any) -> None:
        self.response = initial_response.http_response

    def run(self) -> None:
        return None

    def status(self) -> str:
        return "InProgress"

    def finished(self) -> bool:
        return True  # nothing for the poller's thread to do

    def resource(self) -> None:
        return None


def swap_token(response: Any) -> str:
    """What later ticks need to follow the swap: its status URLs, as the platform gave them."""
    headers = response.headers
    return json.dumps(
        {
            "v": 1,
            "status": response.status_code,
            "location": headers.get("Location"),
            "asyncOperation": headers.get("Azure-AsyncOperation"),
        },
        separators=(",", ":"),
    )


# ---------------------------------------------------------------------------------------------
# Deployment modes
# ---------------------------------------------------------------------------------------------


def deployment_mode(kind: str, linux_fx: str, windows_fx: str, artifact: Artifact) -> str:
    """How to put ``artifact`` on a slot of this site: "linuxContainer", "windowsContainer" or
    "package". Raises TerminalPlatformError for what cannot be done safely."""
    kind = (kind or "").lower()
    linux, windows = (linux_fx or "").upper(), (windows_fx or "").upper()
    if linux.startswith("SITECONTAINERS"):
        raise TerminalPlatformError(
            "the site is a sidecar app (linuxFxVersion SITECONTAINERS): setting a single image would drop its "
            "sidecars, and sitecontainers are not supported yet; release it another way"
        )
    windows_site = "windows" in kind or bool(windows)
    container_site = "container" in kind or linux.startswith("DOCKER|") or windows.startswith("DOCKER|")
    if artifact.kind == "container":
        if not container_site:
            stack = linux_fx or windows_fx or "a Windows code stack"
            raise TerminalPlatformError(
                f"the site runs code ({stack}), not a container: a container release would turn it into a container "
                "app; set the site up as a container app first, or release a package"
            )
        return "windowsContainer" if windows_site else "linuxContainer"
    if container_site:
        raise TerminalPlatformError(
            "the site runs a container: it cannot run from a package; release a container image instead"
        )
    if linux.startswith("PYTHON|"):
        raise TerminalPlatformError(
            f"the site runs {linux_fx}: App Service cannot run Python apps from a package "
            "(WEBSITE_RUN_FROM_PACKAGE); deploy a container, or build on the platform"
        )
    return "package"


# ---------------------------------------------------------------------------------------------
# The adapter
# ---------------------------------------------------------------------------------------------


class AppServiceSlotPlatform:
    def __init__(
        self,
        credential: Any,
        *,
        arm_endpoint: str = "https://management.azure.com",
        arm_scope: str = "https://management.azure.com/.default",
        ca_bundle: str | None = None,
        retry_total: int = 3,
        read_timeout: float = 30.0,
        prober: HttpProber | None = None,
        readiness_path: str = "/",
        readiness_timeout: float = 5.0,
        metrics_delay: timedelta = DEFAULT_METRICS_DELAY,
    ):
        self._credential = credential
        self._arm_endpoint = arm_endpoint
        self._arm_scope = arm_scope
        self._ca_bundle = ca_bundle
        self._retry_total = retry_total
        self._read_timeout = read_timeout
        self._prober = prober or HttpProber()
        self._readiness_path = readiness_path
        self._readiness_timeout = readiness_timeout
        self.metrics_delay = metrics_delay
        self._clients: dict[str, WebSiteManagementClient] = {}
        self._hosts: dict[tuple[str, str, str, str], str] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, credential: Any) -> AppServiceSlotPlatform:
        return cls(
            credential,
            arm_endpoint=settings.arm_endpoint,
            arm_scope=settings.arm_scope,
            ca_bundle=settings.arm_ca_bundle,
            retry_total=settings.arm_retry_total,
            prober=HttpProber(settings.probe_ca_bundle),
            metrics_delay=timedelta(seconds=settings.azure_monitor_delay_seconds),
        )

    # -- plumbing --------------------------------------------------------------------------------

    def _client(self, subscription_id: str) -> WebSiteManagementClient:
        client = self._clients.get(subscription_id)
        if client is None:
            with self._lock:
                client = self._clients.get(subscription_id)
                if client is None:
                    from azure.mgmt.web import WebSiteManagementClient

                    options: dict[str, Any] = {
                        "base_url": self._arm_endpoint,
                        "credential_scopes": [self._arm_scope],
                        "retry_policy": BoundedRetryPolicy(retry_total=self._retry_total),
                        "read_timeout": self._read_timeout,
                        "polling_interval": 0,
                    }
                    if self._ca_bundle:
                        options["connection_verify"] = self._ca_bundle
                    client = WebSiteManagementClient(self._credential, subscription_id, **options)
                    self._clients[subscription_id] = client
        return client

    @staticmethod
    def _call(what: str, target: Target, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except (HttpResponseError, ServiceRequestError, ServiceResponseError, ClientAuthenticationError) as exc:
            raise classify(exc, what, target) from exc

    def _get(self, what: str, target: Target, url: str, **params: str) -> HttpResponse:
        """One GET through the client's pipeline (auth, retries); the caller reads the status."""
        from azure.core.rest import HttpRequest

        client = self._client(target.subscription_id)
        return self._call(what, target, client.send_request, HttpRequest("GET", url, params=params or None))

    def _slot_host(self, target: Target) -> str:
        key = (target.subscription_id.lower(), target.resource_group.lower(), target.site.lower(), target.slot.lower())
        host = self._hosts.get(key)
        if host is None:
            apps = self._client(target.subscription_id).web_apps
            slot = self._call(
                "reading the slot", target, apps.get_slot, target.resource_group, target.site, target.slot
            )
            host = slot.default_host_name
            if not host:
                raise TerminalPlatformError(f"slot {target.slot} of {target.site} has no default host name")
            self._hosts[key] = host
        return host

    def _production_host(self, target: Target) -> str:
        key = (target.subscription_id.lower(), target.resource_group.lower(), target.site.lower(), "")
        host = self._hosts.get(key)
        if host is None:
            apps = self._client(target.subscription_id).web_apps
            site = self._call("reading the site", target, apps.get, target.resource_group, target.site)
            host = site.default_host_name or ""
            self._hosts[key] = host
        return host

    def _rules(self, target: Target) -> list[Any]:
        apps = self._client(target.subscription_id).web_apps
        config = self._call(
            "reading the production routing rules", target, apps.get_configuration, target.resource_group, target.site
        )
        return list((config.experiments.ramp_up_rules if config.experiments else None) or [])

    def _weight(self, rules: list[Any], host: str) -> float:
        return sum(
            float(r.reroute_percentage or 0) for r in rules if (r.action_host_name or "").lower() == host.lower()
        )

    # -- SlotPlatform ----------------------------------------------------------------------------

    def observe(self, target: Target, *, swap_token: str | None = None, probe_staging: bool = False) -> SlotObservation:
        apps = self._client(target.subscription_id).web_apps
        rg, site, slot = target.resource_group, target.site, target.slot
        # The swap's status first: if it says done, the settings read after it show the swapped slots.
        swap = None
        if swap_token:
            try:
                swap = self.swap_state(target, swap_token)
            except TransientPlatformError as exc:
                # The slots below still say where the release runs; the status is read next time.
                log.warning("swap status of %s unavailable: %s", target.site, exc.message)
                swap = SwapState(SwapStatus.UNKNOWN, exc.message)
        production = self._call("reading production app settings", target, apps.list_application_settings, rg, site)
        staging = self._call("reading slot app settings", target, apps.list_application_settings_slot, rg, site, slot)
        staging_host = self._slot_host(target)
        weight = self._weight(self._rules(target), staging_host)
        ready = False
        if probe_staging:
            state = self._call("reading the slot state", target, apps.get_slot, rg, site, slot).state
            if (state or "").lower() == "running":
                probe = self._prober.get(url_for(staging_host, self._readiness_path), timeout=self._readiness_timeout)
                ready = probe.status is not None and probe.status < 500
        return SlotObservation(
            production_release=(production.properties or {}).get(slot_settings.RELEASE_ID),
            staging_release=(staging.properties or {}).get(slot_settings.RELEASE_ID),
            staging_ready=ready,
            weight=weight,
            staging_host=staging_host,
            production_host=self._production_host(target),
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
        from azure.mgmt.web.models import SiteConfigResource, StringDictionary

        apps = self._client(target.subscription_id).web_apps
        rg, site, slot = target.resource_group, target.site, target.slot
        production = self._call("reading the site's configuration", target, apps.get_configuration, rg, site)
        slot_config = self._call(
            "reading the slot's configuration", target, apps.get_configuration_slot, rg, site, slot
        )
        kind = self._call("reading the site", target, apps.get, rg, site).kind or ""
        mode = deployment_mode(
            kind,
            slot_config.linux_fx_version or production.linux_fx_version or "",
            slot_config.windows_fx_version or production.windows_fx_version or "",
            artifact,
        )
        self._refuse_sticky(target, slot_settings.keys_that_must_move(artifact, app_settings))
        if mode != "package":
            image = SiteConfigResource()
            if mode == "windowsContainer":
                image.windows_fx_version = f"DOCKER|{artifact.ref}"
            else:
                image.linux_fx_version = f"DOCKER|{artifact.ref}"
            # A registry the site pulls from with its managed identity: the slot pulls the same way.
            if production.acr_use_managed_identity_creds and not slot_config.acr_use_managed_identity_creds:
                image.acr_use_managed_identity_creds = True
                image.acr_user_managed_identity_id = production.acr_user_managed_identity_id
            self._call(
                "setting the slot's container image", target, apps.update_configuration_slot, rg, site, slot, image
            )
        current = self._call("reading slot app settings", target, apps.list_application_settings_slot, rg, site, slot)
        settings = slot_settings.release_settings(
            dict(current.properties or {}),
            release_id=release_id,
            version=version,
            artifact=artifact,
            app_settings=app_settings,
            warmup=warmup,
        )
        # One PUT with the stamp in it (the slot says which release it runs only once it does);
        # App Service restarts the app, and the slot is ready when it answers again.
        self._call(
            "writing slot app settings",
            target,
            apps.update_application_settings_slot,
            rg,
            site,
            slot,
            StringDictionary(properties=settings),
        )

    def _refuse_sticky(self, target: Target, keys: set[str]) -> None:
        """A slot setting stays with its slot on a swap: a stamp or a release setting marked so would
        not move into production with the release."""
        apps = self._client(target.subscription_id).web_apps
        names = self._call(
            "reading the slot settings names",
            target,
            apps.list_slot_configuration_names,
            target.resource_group,
            target.site,
        )
        sticky = sorted(keys & set(names.app_setting_names or []))
        if sticky:
            raise TerminalPlatformError(
                f"app setting {', '.join(sticky)} is a deployment slot setting on {target.site}: it would stay in the "
                f"slot instead of moving into production with the release; clear 'Deployment slot setting' for it "
                f"(config/slotConfigNames) and retry"
            )

    def set_weight(self, target: Target, weight: float) -> None:
        from azure.mgmt.web.models import Experiments, RampUpRule, SiteConfigResource

        apps = self._client(target.subscription_id).web_apps
        host = self._slot_host(target)
        rules = [r for r in self._rules(target) if (r.action_host_name or "").lower() != host.lower()]
        if weight > 0:
            rules.append(RampUpRule(name=target.slot, action_host_name=host, reroute_percentage=float(weight)))
        self._call(
            "setting the routing rule",
            target,
            apps.update_configuration,
            target.resource_group,
            target.site,
            SiteConfigResource(experiments=Experiments(ramp_up_rules=rules)),
        )
        observed = self._weight(self._rules(target), host)
        if abs(observed - weight) > 0.01:
            raise TransientPlatformError(
                f"the routing rule did not take: asked {weight:g}% to {host}, production reports {observed:g}%"
            )

    def begin_swap(self, target: Target) -> str:
        """Ask for the swap; returns a token with the status URL to follow it by."""
        from azure.mgmt.web.models import CsmSlotEntity

        apps = self._client(target.subscription_id).web_apps
        method = _SendOnly()
        self._call(
            "starting the swap",
            target,
            apps.begin_swap_slot,
            target.resource_group,
            target.site,
            target.slot,
            CsmSlotEntity(target_slot="production", preserve_vnet=True),
            polling=method,
        )
        return swap_token(method.response)

    def swap_state(self, target: Target, token: str) -> SwapState:
        """One status request for the swap behind ``token``; never waits for it to finish. A status
        URL that fails is transient (raised); the swap's own failure is a FAILED state with the
        platform's message."""
        try:
            started = json.loads(token)
            location, operation = started.get("location"), started.get("asyncOperation")
        except (ValueError, AttributeError):
            return SwapState(SwapStatus.FAILED, "the swap's continuation token cannot be read; check the slot")
        if not location and not operation:
            done = started.get("status") in (200, 204)
            return SwapState(SwapStatus.SUCCEEDED if done else SwapStatus.FAILED, "the swap gave no status URL")
        if operation:
            return self._async_operation_state(target, operation)
        response = self._get("checking the swap", target, location)
        status = response.status_code
        if status == 202:
            return SwapState(SwapStatus.IN_PROGRESS)
        if status in (200, 201, 204):
            return SwapState(SwapStatus.SUCCEEDED)
        return self._failed_or_transient(response, target)

    def _failed_or_transient(self, response: HttpResponse, target: Target) -> SwapState:
        """An error from a swap's status URL: the swap failed (any 4xx but 408 and 429, with the
        platform's message), or the status request did (408, 429, 5xx: try again later)."""
        status = response.status_code
        code, message = error_details(response)
        if status in (408, 429) or status >= 500:
            raise TransientPlatformError(
                f"checking the swap on {target.resource_group}/{target.site}: ARM answered {status} {code}",
                status=status,
                code=code,
                retry_after=_retry_after(response),
            )
        return SwapState(SwapStatus.FAILED, f"{status} {code}: {message}".strip())

    def _async_operation_state(self, target: Target, url: str) -> SwapState:
        response = self._get("checking the swap", target, url)
        status = response.status_code
        if status >= 400:
            return self._failed_or_transient(response, target)
        try:
            doc = response.json()
        except (ValueError, UnicodeDecodeError):
            raise TransientPlatformError(f"checking the swap: the status answer ({status}) is not JSON") from None
        state = str((doc or {}).get("status") or "").lower()
        if state == "succeeded":
            return SwapState(SwapStatus.SUCCEEDED)
        if state in ("failed", "canceled", "cancelled"):
            code, message = error_details(response)
            return SwapState(SwapStatus.FAILED, f"{code}: {message}".strip(": ") or state)
        return SwapState(SwapStatus.IN_PROGRESS)

    def read_metrics(self, target: Target, *, production: bool, start: datetime, end: datetime) -> VersionStats:
        """Requests, HTTP 5xx and average response time of the production site or the slot, over
        the whole minutes in [start, end) that Azure Monitor has complete: one-minute buckets, the
        newest ``metrics_delay`` left out (they are missing or partial). No complete minute: no
        requests, so the analysis waits instead of judging on partial data."""
        first = start.replace(second=0, microsecond=0)
        if first < start:
            first += timedelta(minutes=1)
        last = (end - self.metrics_delay).replace(second=0, microsecond=0)
        if last <= first:
            return VersionStats()
        site_id = (
            f"/subscriptions/{target.subscription_id}/resourceGroups/{target.resource_group}"
            f"/providers/Microsoft.Web/sites/{target.site}"
        )
        resource = site_id if production else f"{site_id}/slots/{target.slot}"
        what = f"reading metrics of {'production' if production else 'slot ' + target.slot}"
        response = self._get(
            what,
            target,
            f"{resource}/providers/Microsoft.Insights/metrics",
            **{
                "api-version": METRICS_API_VERSION,
                "metricnames": "Requests,Http5xx,HttpResponseTime",
                "timespan": f"{_iso(first)}/{_iso(last)}",
                "interval": "PT1M",
                "aggregation": "Total,Average",
            },
        )
        if response.status_code >= 400:
            code, message = error_details(response)
            raise classify_status(response.status_code, code, message, what, target, retry_after=_retry_after(response))
        # metric name -> minute -> the point's value (Total for counts, Average for the response time)
        minutes: dict[str, dict[str, float]] = {}
        for metric in response.json().get("value", []):
            name = metric["name"]["value"]
            field = "average" if name == "HttpResponseTime" else "total"
            for series in metric.get("timeseries", []):
                for point in series.get("data", []):
                    stamp = str(point.get("timeStamp", ""))
                    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
                    if first <= moment < last and point.get(field) is not None:
                        minutes.setdefault(name, {})[stamp] = float(point[field])
        per_minute = minutes.get("Requests", {})
        latency = minutes.get("HttpResponseTime", {})
        served = sum(per_minute.values())
        weighted = sum(latency[m] * per_minute.get(m, 0) for m in latency)
        return VersionStats(
            requests=int(served),
            errors=int(sum(minutes.get("Http5xx", {}).values())),
            latency_ms=weighted / served * 1000 if served and latency else None,
        )

    def restore_staging(self, target: Target, last_good: LastGood) -> None:
        self.deploy(
            target,
            release_id=last_good.release_id,
            version=last_good.version,
            artifact=last_good.artifact,
            app_settings=last_good.app_settings,
        )
