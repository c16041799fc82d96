"""The SlotPlatform on Azure App Service, through azure-mgmt-web 11.x.

The same code runs in Azure and against the local emulator: only the ARM endpoint, the credential
and the CA to trust differ (settings ARM_ENDPOINT, ARM_SCOPE, ARM_CA_BUNDLE).

- Deploy: image (``linuxFxVersion``, PATCH) or package (``WEBSITE_RUN_FROM_PACKAGE``), then the
  app settings read-merge-write (the PUT replaces all) stamped with non-sticky ``RELEASE_ID`` and
  ``RELEASE_VERSION``, then a soft restart.
- Weight: a ramp-up rule on the production site pointing at the slot's ``defaultHostName`` as ARM
  reports it (never built), verified by reading it back; weight 0 removes the rule.
- Swap: ``begin_swap_slot`` without ever waiting on ``.result()``: the continuation token is
  persisted and each later tick makes exactly one status request.
- Errors: 408/409/429/5xx and connection problems are transient; 401/403/404 and other refusals
  are terminal, with a message that says what to fix.
"""

from __future__ import annotations

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

from shared.adapters.probes import HttpProber, url_for
from shared.domain.model import Artifact, LastGood, SlotObservation, SwapState, SwapStatus, Target, VersionStats
from shared.ports import PlatformError, TerminalPlatformError, TransientPlatformError

if TYPE_CHECKING:
    from azure.mgmt.web import WebSiteManagementClient

    from shared.settings import Settings

log = logging.getLogger("release_controller.appservice")
T = TypeVar("T")

METRICS_API_VERSION = "2024-02-01"
TRANSIENT_STATUS = frozenset({408, 409, 423, 429, 500, 502, 503, 504})
RBAC_HINT = "grant the controller's managed identity 'Website Contributor' on the site (README: RBAC)"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _timespan(start: datetime, end: datetime) -> str:
    """Whole seconds from the first full second of the window (nothing from before it, such as the
    smoke checks) to the end of the current one (so a short window is never empty)."""
    first = start.replace(microsecond=0) + (timedelta(seconds=1) if start.microsecond else timedelta(0))
    last = max(end.replace(microsecond=0) + timedelta(seconds=1), first + timedelta(seconds=1))
    return f"{_iso(first)}/{_iso(last)}"


def classify(exc: Exception, what: str, target: Target) -> PlatformError:
    """Transient (retry later, state unchanged) or terminal (rollback path), with a useful message."""
    where = f"{target.resource_group}/{target.site}"
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        status = exc.status_code
        code = (exc.error.code if exc.error is not None else None) or ""
        detail = (exc.error.message if exc.error is not None else None) or exc.reason or str(exc)
        detail = detail.splitlines()[0][:400]
        if status == 401:
            return TerminalPlatformError(
                f"{what} on {where}: ARM rejected the controller's token (401 {code}); check the managed identity "
                f"(AZURE_CLIENT_ID) and ARM_SCOPE",
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
        if status in TRANSIENT_STATUS:
            return TransientPlatformError(
                f"{what} on {where}: ARM answered {status} {code}: {detail}", status=status, code=code
            )
        return TerminalPlatformError(
            f"{what} on {where}: ARM refused the request ({status} {code}): {detail}", status=status, code=code
        )
    if isinstance(exc, ClientAuthenticationError):
        return TransientPlatformError(f"{what}: could not get a token for ARM: {str(exc).splitlines()[0][:300]}")
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return TransientPlatformError(
            f"{what} on {where}: ARM could not be reached or did not answer in time ({type(exc).__name__})"
        )
    raise exc


def _single_poll_method(*, poll: bool) -> Any:
    """An ARM polling method that makes at most one status request, and never sleeps."""
    from azure.mgmt.core.polling.arm_polling import ARMPolling

    class SinglePoll(ARMPolling):
        failure = ""

        def run(self) -> None:
            if not poll or self.finished():
                return
            self.update_status()
            if self.status().lower() in ("failed", "canceled"):
                try:
                    error = self._pipeline_response.http_response.json().get("error") or {}
                except ValueError:
                    error = {}
                self.failure = f"{error.get('code', 'Failed')}: {error.get('message', 'no detail')}"

    return SinglePoll(0)


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
                        "retry_total": self._retry_total,
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
        except (HttpResponseError, ServiceRequestError, ServiceResponseError) as exc:
            raise classify(exc, what, target) from exc

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
        swap = self.swap_state(target, swap_token) if swap_token else None
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
            production_release=(production.properties or {}).get("RELEASE_ID"),
            staging_release=(staging.properties or {}).get("RELEASE_ID"),
            staging_ready=ready,
            weight=weight,
            staging_host=staging_host,
            production_host=self._production_host(target),
            swap=swap,
        )

    def deploy(
        self, target: Target, *, release_id: str, version: str, artifact: Artifact, app_settings: dict[str, str]
    ) -> None:
        from azure.mgmt.web.models import SiteConfigResource, StringDictionary

        apps = self._client(target.subscription_id).web_apps
        rg, site, slot = target.resource_group, target.site, target.slot
        if artifact.kind == "container":
            self._call(
                "setting the slot's container image",
                target,
                apps.update_configuration_slot,
                rg,
                site,
                slot,
                SiteConfigResource(linux_fx_version=f"DOCKER|{artifact.ref}"),
            )
        current = self._call("reading slot app settings", target, apps.list_application_settings_slot, rg, site, slot)
        merged = {**(current.properties or {}), **app_settings}
        if artifact.kind == "package":
            merged["WEBSITE_RUN_FROM_PACKAGE"] = artifact.ref
        else:
            merged.pop("WEBSITE_RUN_FROM_PACKAGE", None)
        # Stamped last, in the same write: the slot says which release it runs only once it does.
        merged.update(RELEASE_ID=release_id, RELEASE_VERSION=version)
        self._call(
            "writing slot app settings",
            target,
            apps.update_application_settings_slot,
            rg,
            site,
            slot,
            StringDictionary(properties=merged),
        )
        self._call("restarting the slot", target, apps.restart_slot, rg, site, slot, soft_restart=True)

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

    def _swap_poller(self, what: str, target: Target, method: Any, token: str | None = None) -> Any:
        from azure.mgmt.web.models import CsmSlotEntity

        apps = self._client(target.subscription_id).web_apps
        options: dict[str, Any] = {"polling": method}
        if token is not None:
            options["continuation_token"] = token
        return self._call(
            what,
            target,
            apps.begin_swap_slot,
            target.resource_group,
            target.site,
            target.slot,
            CsmSlotEntity(target_slot="production", preserve_vnet=True),
            **options,
        )

    def begin_swap(self, target: Target) -> str:
        poller = self._swap_poller("starting the swap", target, _single_poll_method(poll=False))
        return poller.continuation_token()

    def swap_state(self, target: Target, token: str) -> SwapState:
        """One status request for the swap behind ``token``; never waits for it to finish."""
        method = _single_poll_method(poll=True)
        poller = self._swap_poller("resuming the swap", target, method, token)
        self._call("checking the swap", target, poller.wait)
        status = method.status().lower()
        if status == "succeeded":
            return SwapState(SwapStatus.SUCCEEDED)
        if status in ("failed", "canceled"):
            return SwapState(SwapStatus.FAILED, method.failure or status)
        return SwapState(SwapStatus.IN_PROGRESS)

    def read_metrics(self, target: Target, *, production: bool, start: datetime, end: datetime) -> VersionStats:
        """Requests, HTTP 5xx and average response time of the production site or the slot over
        [start, end], one data point (interval FULL), through ARM (Microsoft.Insights metrics)."""
        from azure.core.rest import HttpRequest

        site_id = (
            f"/subscriptions/{target.subscription_id}/resourceGroups/{target.resource_group}"
            f"/providers/Microsoft.Web/sites/{target.site}"
        )
        resource = site_id if production else f"{site_id}/slots/{target.slot}"
        what = f"reading metrics of {'production' if production else 'slot ' + target.slot}"
        request = HttpRequest(
            "GET",
            f"{resource}/providers/Microsoft.Insights/metrics",
            params={
                "api-version": METRICS_API_VERSION,
                "metricnames": "Requests,Http5xx,HttpResponseTime",
                "timespan": _timespan(start, end),
                "interval": "FULL",
                "aggregation": "Total,Average",
            },
        )
        client = self._client(target.subscription_id)
        response = self._call(what, target, client.send_request, request)
        if response.status_code >= 400:
            raise classify(HttpResponseError(response=response), what, target)
        totals: dict[str, float] = {}
        averages: dict[str, list[float]] = {}
        for metric in response.json().get("value", []):
            name = metric["name"]["value"]
            for series in metric.get("timeseries", []):
                for point in series.get("data", []):
                    totals[name] = totals.get(name, 0.0) + float(point.get("total") or 0)
                    if point.get("average") is not None:
                        averages.setdefault(name, []).append(float(point["average"]))
        latency = averages.get("HttpResponseTime")
        return VersionStats(
            requests=int(totals.get("Requests", 0)),
            errors=int(totals.get("Http5xx", 0)),
            latency_ms=(sum(latency) / len(latency) * 1000) if latency else None,
        )

    def restore_staging(self, target: Target, last_good: LastGood) -> None:
        self.deploy(
            target,
            release_id=last_good.release_id,
            version=last_good.version,
            artifact=last_good.artifact,
            app_settings=last_good.app_settings,
        )
