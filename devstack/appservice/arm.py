"""The control plane: the subset of the ARM REST API (Microsoft.Web 2025-05-01, Microsoft.Insights
metrics 2024-02-01) the controller uses, answering with Azure's wire shapes. Anything else is a 404
or a 400 with an ARM error body: never a silent 200."""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from devstack.appservice.state import Cloud, Site, Slot, SwapOperation

WEB_API_VERSION = "2025-05-01"
METRICS_API_VERSION = "2024-02-01"
SITE_PREFIX = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)/providers/microsoft\.web/sites/(?P<site>[^/]+)"
    r"(?P<rest>/.*)?$",
    re.IGNORECASE,
)
OPERATION = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/providers/microsoft\.web/locations/(?P<loc>[^/]+)/operations/(?P<id>[^/]+)$",
    re.IGNORECASE,
)
METRICS = {
    "Requests": ("Count", "Requests", "The total number of requests regardless of their resulting HTTP status code."),
    "Http5xx": ("Count", "Http Server Errors", "The count of requests resulting in an HTTP status code >= 500."),
    "HttpResponseTime": ("Seconds", "Response Time", "The time taken for the app to serve requests, in seconds."),
}
ROUTING_RULE_KEYS = {
    "actionHostName",
    "reroutePercentage",
    "changeStep",
    "changeIntervalInMinutes",
    "minReroutePercentage",
    "maxReroutePercentage",
    "changeDecisionCallbackUrl",
    "name",
}


# The audiences ARM accepts in a bearer token (a token for any other resource is refused).
ARM_AUDIENCES = frozenset(
    {
        "https://management.azure.com",
        "https://management.azure.com/",
        "https://management.core.windows.net",
        "https://management.core.windows.net/",
    }
)


class ArmError(Exception):
    """An error answer. ``shape`` "arm" is ``{"error": {"code", "message"}}``; "appservice" is App
    Service's own ``{"Code", "Message", "Details": [...]}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        shape: str = "arm",
        headers: dict[str, str] | None = None,
    ):
        self.status, self.code, self.message = status, code, message
        self.shape = shape
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        if self.shape == "appservice":
            return {
                "Code": self.code,
                "Message": self.message,
                "Target": None,
                "Details": [{"Message": self.message}, {"Code": self.code}, {"ErrorEntity": {"Code": self.code}}],
                "Innererror": None,
            }
        return {"error": {"code": self.code, "message": self.message}}


def _claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT (not verified: the emulator checks what ARM checks, not signatures)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def group_id(site: Site) -> str:
    return f"/subscriptions/{site.subscription_id}/resourceGroups/{site.resource_group}"


def site_id(site: Site) -> str:
    return f"{group_id(site)}/providers/Microsoft.Web/sites/{site.name}"


def slot_id(site: Site, slot: Slot) -> str:
    return site_id(site) if slot is site.production else f"{site_id(site)}/slots/{slot.name}"


def site_body(site: Site, slot: Slot) -> dict[str, Any]:
    host = site.front_door_host if slot is site.production else slot.host
    name = site.name if slot is site.production else f"{site.name}/{slot.name}"
    properties: dict[str, Any] = {
        "state": "Running",
        "hostNames": [host],
        "repositorySiteName": site.name,
        "usageState": "Normal",
        "enabled": True,
        "enabledHostNames": [host],
        "availabilityState": "Normal",
        "hostNameSslStates": [{"name": host, "sslState": "Disabled", "hostType": "Standard"}],
        "serverFarmId": f"{group_id(site)}/providers/Microsoft.Web/serverfarms/{site.name}-plan",
        "reserved": "linux" in site.kind,
        "isXenon": False,
        "hyperV": False,
        "lastModifiedTimeUtc": _iso(time.time()),
        "siteConfig": {
            "numberOfWorkers": 1,
            "linuxFxVersion": slot.config.get("linuxFxVersion", ""),
            "windowsFxVersion": slot.config.get("windowsFxVersion"),
        },
        "clientAffinityEnabled": True,
        "httpsOnly": True,
        "defaultHostName": host,
        "resourceGroup": site.resource_group,
    }
    if slot is site.production and site.last_swap:
        properties["slotSwapStatus"] = site.last_swap
    return {
        "id": slot_id(site, slot),
        "name": name,
        "type": "Microsoft.Web/sites" if slot is site.production else "Microsoft.Web/sites/slots",
        "kind": site.kind,
        "location": site.location,
        "properties": properties,
    }


def config_body(site: Site, slot: Slot) -> dict[str, Any]:
    properties = {
        "numberOfWorkers": 1,
        "linuxFxVersion": "",
        "alwaysOn": False,
        "http20Enabled": False,
        "minTlsVersion": "1.2",
        "ftpsState": "Disabled",
        "experiments": {"rampUpRules": []},
        **json.loads(json.dumps(slot.config)),
    }
    return {
        "id": f"{slot_id(site, slot)}/config/web",
        "name": "web",
        "type": "Microsoft.Web/sites/config",
        "kind": site.kind,
        "properties": properties,
    }


def settings_body(site: Site, slot: Slot) -> dict[str, Any]:
    return {
        "id": f"{slot_id(site, slot)}/config/appsettings",
        "name": "appsettings",
        "type": "Microsoft.Web/sites/config",
        "kind": site.kind,
        "properties": dict(slot.settings),
    }


def slot_config_names_body(site: Site) -> dict[str, Any]:
    return {
        "id": f"{site_id(site)}/config/slotConfigNames",
        "name": "slotConfigNames",
        "type": "Microsoft.Web/sites/config",
        "properties": {
            "appSettingNames": sorted(site.sticky_settings),
            "connectionStringNames": sorted(site.sticky_connection_strings),
            "azureStorageConfigNames": [],
        },
    }


def _validate_rules(rules: Any) -> list[dict[str, Any]]:
    if not isinstance(rules, list):
        raise ArmError(400, "BadRequest", "experiments.rampUpRules must be an array")
    total = 0.0
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict) or set(rule) - ROUTING_RULE_KEYS:
            raise ArmError(400, "BadRequest", f"experiments.rampUpRules[{index}] is not a RampUpRule")
        pct = rule.get("reroutePercentage")
        if not isinstance(pct, (int, float)) or not 0 <= pct <= 100:
            raise ArmError(400, "BadRequest", f"rampUpRules[{index}].reroutePercentage must be between 0 and 100")
        if not isinstance(rule.get("actionHostName"), str):
            raise ArmError(400, "BadRequest", f"rampUpRules[{index}].actionHostName is required")
        total += pct
    if total > 100:
        raise ArmError(400, "BadRequest", "the ramp-up rules route more than 100% of the traffic")
    return rules


class ArmApi:
    """Routes one ARM request to the emulated cloud. ``base_url`` is the emulator's own address."""

    def __init__(self, cloud: Cloud, base_url: str, *, async_operation_header: bool = False):
        self.cloud = cloud
        self.base_url = base_url
        # Azure's swap answers 202 with Location only; the Azure-AsyncOperation shape is kept for tests.
        self.async_operation_header = async_operation_header

    @staticmethod
    def _authenticate(headers: dict[str, str]) -> None:
        """As ARM does: a bearer JWT for ARM's audience that has not expired (by the real clock)."""
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            raise ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
        claims = _claims(auth[7:].strip())
        if claims is None:
            raise ArmError(
                401, "InvalidAuthenticationToken", "The access token is invalid: it is not a JSON Web Token."
            )
        audience = claims.get("aud")
        if audience not in ARM_AUDIENCES:
            raise ArmError(
                401,
                "InvalidAuthenticationTokenAudience",
                f"The access token has been obtained for wrong audience or resource '{audience}'. It should exactly "
                f"match with one of the allowed audiences {', '.join(repr(a) for a in sorted(ARM_AUDIENCES))}.",
            )
        expires = claims.get("exp")
        if not isinstance(expires, (int, float)) or expires <= time.time():
            raise ArmError(
                401,
                "ExpiredAuthenticationToken",
                f"The access token expiry UTC time '{_iso(float(expires or 0))}' is earlier than current UTC time "
                f"'{_iso(time.time())}'.",
            )

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        split = urlsplit(raw_path)
        path = unquote(split.path).rstrip("/")
        query = {k.lower(): v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        self._authenticate(headers)
        self.cloud.arm_requests.append((method, path))
        low, high = self.cloud.timings.arm_latency_seconds
        if high > 0:
            time.sleep(low + (high - low) * self.cloud.rng.random())
        fault = self.cloud.take_fault(method, path)
        if fault is not None:
            if fault.delay_seconds:
                time.sleep(fault.delay_seconds)
            if fault.status:
                extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                raise ArmError(fault.status, fault.code, fault.message, shape=fault.shape, headers=extra)
        self.cloud.advance()

        operation = OPERATION.match(path)
        if operation:
            self._api_version(query, WEB_API_VERSION)
            return self._operation_status(operation.group("id"))
        match = SITE_PREFIX.match(path)
        if not match:
            raise ArmError(404, "NotFound", f"The emulator does not implement {method} {path}")
        site = self.cloud.site(match["sub"], match["rg"], match["site"])
        rest = match["rest"] or ""
        metrics = re.fullmatch(r"(/slots/(?P<slot>[^/]+))?/providers/microsoft\.insights/metrics", rest, re.IGNORECASE)
        if metrics:
            self._api_version(query, METRICS_API_VERSION)
            owner, slot = self._slot(site, match, metrics.group("slot") or "production")
            return 200, {}, self._metrics_response(owner, slot, query)
        self._api_version(query, WEB_API_VERSION)
        if site is not None and site.locked and method != "GET" and not rest.lower().endswith("/list"):
            raise ArmError(
                409,
                "ScopeLocked",
                f"The scope '{site_id(site)}' cannot perform write operation because following scope(s) are locked: "
                f"'{group_id(site)}'. Please remove the lock and try again.",
            )
        return self._web(method, site, match, rest, query, body)

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _api_version(query: dict[str, str], expected: str) -> None:
        version = query.get("api-version")
        if not version:
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if version != expected:
            raise ArmError(
                400,
                "InvalidApiVersionParameter",
                f"The api-version '{version}' is invalid. The supported versions are '{expected}'.",
            )

    @staticmethod
    def _slot(site: Site | None, match: re.Match[str], name: str) -> tuple[Site, Slot]:
        if site is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.Web/sites/{match['site']}' under resource group '{match['rg']}' "
                "was not found.",
            )
        slot = site.slot(name)
        if slot is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.Web/sites/{site.name}/slots/{name}' under resource group "
                f"'{site.resource_group}' was not found.",
            )
        return site, slot

    @staticmethod
    def _json(body: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            raise ArmError(
                400, "InvalidRequestContent", "The request content was invalid and could not be deserialized."
            ) from None
        if not isinstance(doc, dict):
            raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
        return doc

    # -- Microsoft.Web -----------------------------------------------------------------------

    def _web(
        self, method: str, site: Site | None, match: re.Match[str], rest: str, query: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        slot_match = re.match(r"^/slots/(?P<slot>[^/]+)(?P<tail>/.*)?$", rest, re.IGNORECASE)
        if slot_match:
            slot_name, tail = slot_match["slot"], (slot_match["tail"] or "").lower()
        else:
            slot_name, tail = "production", rest.lower()
        if rest.lower() == "/slots" and method == "GET":
            owner, _ = self._slot(site, match, "production")
            return 200, {}, {"value": [site_body(owner, s) for s in owner.slots.values()]}
        owner, slot = self._slot(site, match, slot_name)
        routes: dict[tuple[str, str], Callable[[], tuple[int, dict[str, str], Any]]] = {
            ("GET", ""): lambda: (200, {}, site_body(owner, slot)),
            ("GET", "/config/slotconfignames"): lambda: (200, {}, slot_config_names_body(owner)),
            ("PUT", "/config/slotconfignames"): lambda: self._put_slot_config_names(owner, body),
            ("GET", "/config/web"): lambda: (200, {}, config_body(owner, slot)),
            ("PATCH", "/config/web"): lambda: self._update_config(owner, slot, body, replace=False),
            ("PUT", "/config/web"): lambda: self._update_config(owner, slot, body, replace=True),
            ("POST", "/config/appsettings/list"): lambda: (200, {}, settings_body(owner, slot)),
            ("PUT", "/config/appsettings"): lambda: self._put_settings(owner, slot, body),
            ("POST", "/restart"): lambda: self._restart(slot, query),
        }
        if slot is not owner.production:
            routes[("POST", "/slotsswap")] = lambda: self._swap(owner, slot, body)
            operation_result = re.fullmatch(r"/operationresults/([^/]+)", tail)
            if operation_result and method == "GET":
                return self._operation_result(operation_result.group(1))
        handler = routes.get((method, tail))
        if handler is None:
            raise ArmError(404, "NotFound", f"The emulator does not implement {method} {rest or '/'} on a site")
        return handler()

    def _update_config(self, site: Site, slot: Slot, body: bytes, *, replace: bool) -> tuple[int, dict[str, str], Any]:
        doc = self._json(body)
        properties = doc.get("properties")
        if not isinstance(properties, dict):
            raise ArmError(400, "BadRequest", "The request body must have 'properties'.")
        if "experiments" in properties and properties["experiments"] is not None:
            experiments = properties["experiments"]
            if not isinstance(experiments, dict):
                raise ArmError(400, "BadRequest", "experiments must be an object")
            _validate_rules(experiments.get("rampUpRules") or [])
        with self.cloud.lock:
            stack = (slot.config.get("linuxFxVersion"), slot.config.get("windowsFxVersion"))
            if replace:
                slot.config = {}
            for key, value in properties.items():
                if value is not None:
                    slot.config[key] = json.loads(json.dumps(value))
            if (slot.config.get("linuxFxVersion"), slot.config.get("windowsFxVersion")) != stack:
                self.cloud.restart(slot)  # a new image or stack restarts the app
        return 200, {}, config_body(site, slot)

    def _put_slot_config_names(self, site: Site, body: bytes) -> tuple[int, dict[str, str], Any]:
        properties = self._json(body).get("properties")
        if not isinstance(properties, dict):
            raise ArmError(400, "BadRequest", "The request body must have 'properties'.")
        names = properties.get("appSettingNames") or []
        strings = properties.get("connectionStringNames") or []
        if not all(isinstance(n, str) for n in [*names, *strings]):
            raise ArmError(400, "BadRequest", "appSettingNames and connectionStringNames must be arrays of strings")
        with self.cloud.lock:
            site.sticky_settings = set(names)
            site.sticky_connection_strings = set(strings)
        return 200, {}, slot_config_names_body(site)

    def _put_settings(self, site: Site, slot: Slot, body: bytes) -> tuple[int, dict[str, str], Any]:
        doc = self._json(body)
        properties = doc.get("properties")
        if not isinstance(properties, dict) or not all(isinstance(v, str) for v in properties.values()):
            raise ArmError(400, "BadRequest", "properties must map setting names to string values")
        with self.cloud.lock:
            slot.settings = dict(properties)
            self.cloud.restart(slot)  # App Service restarts the app when its settings change
        return 200, {}, settings_body(site, slot)

    def _restart(self, slot: Slot, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        for flag in ("softrestart", "synchronous"):
            if flag in query and query[flag].lower() not in ("true", "false"):
                raise ArmError(400, "BadRequest", f"{flag} must be true or false")
        self.cloud.restart(slot)
        return 200, {}, None

    def _swap(self, site: Site, slot: Slot, body: bytes) -> tuple[int, dict[str, str], Any]:
        doc = self._json(body)
        target = doc.get("targetSlot")
        if not isinstance(target, str) or not isinstance(doc.get("preserveVnet"), bool):
            raise ArmError(400, "BadRequest", "slotSwapEntity needs targetSlot (string) and preserveVnet (boolean)")
        if target.lower() != "production":
            raise ArmError(400, "BadRequest", "the emulator swaps a slot with production only")
        op = self.cloud.begin_swap(site, slot.name)
        if isinstance(op, str):
            raise ArmError(409, "Conflict", op)
        # WebApps_SwapSlot (2025-05-01) declares 202 with Location and Retry-After only.
        headers = {
            "Location": f"{self.base_url}{slot_id(site, slot)}/operationresults/{op.id}?api-version={WEB_API_VERSION}",
            "Retry-After": "15",
        }
        if self.async_operation_header:
            headers["Azure-AsyncOperation"] = (
                f"{self.base_url}/subscriptions/{site.subscription_id}/providers/Microsoft.Web/"
                f"locations/{site.location.replace(' ', '')}/operations/{op.id}?api-version={WEB_API_VERSION}"
            )
        return 202, headers, None

    def _operation(self, op_id: str) -> SwapOperation:
        op = self.cloud.operations.get(op_id)
        if op is None:
            raise ArmError(404, "NotFound", f"Operation {op_id} was not found.")
        return op

    def _operation_status(self, op_id: str) -> tuple[int, dict[str, str], Any]:
        op = self._operation(op_id)
        if not self.async_operation_header:
            return 204, {}, None  # what Azure answers on this route: nothing to read
        doc: dict[str, Any] = {
            "id": op.id,
            "name": op.id,
            "status": op.status,
            "startTime": _iso(time.time() - (time.monotonic() - op.started)),
        }
        if op.ended is not None:
            doc["endTime"] = _iso(time.time() - (time.monotonic() - op.ended))
        if op.status == "Failed" and op.fail_with:
            doc["error"] = {"code": op.fail_with[1], "message": op.fail_with[2]}
        return 200, {}, doc

    def _operation_result(self, op_id: str) -> tuple[int, dict[str, str], Any]:
        """The Location URL: 202 while the swap runs, 200 when it is done, an HTTP error with App
        Service's own error body when it failed."""
        op = self._operation(op_id)
        if op.status == "InProgress":
            return 202, {"Retry-After": "15"}, None
        if op.status == "Failed":
            status, code, message = op.fail_with or (409, "SwapFailed", "the swap failed")
            raise ArmError(status, code, message, shape="appservice")
        return 200, {}, None

    # -- Microsoft.Insights metrics ----------------------------------------------------------

    def _metrics_response(self, site: Site, slot: Slot, query: dict[str, str]) -> dict[str, Any]:
        names = [n.strip() for n in (query.get("metricnames") or "Requests").split(",") if n.strip()]
        for name in names:
            if name not in METRICS:
                raise ArmError(
                    400,
                    "BadRequest",
                    f"Failed to find metric configuration for provider: Microsoft.Web, resource Type: sites, "
                    f"metric: {name}, Valid metrics: {', '.join(METRICS)}",
                )
        start, end = _timespan(query.get("timespan"), self.cloud.now())
        interval = query.get("interval") or "PT1M"
        grain = None if interval.upper() == "FULL" else _grain_seconds(interval)
        aggregations = [a.strip().lower() for a in (query.get("aggregation") or "average").split(",") if a.strip()]
        for aggregation in aggregations:
            if aggregation not in ("average", "total", "count", "minimum", "maximum"):
                raise ArmError(400, "BadRequest", f"Invalid aggregation: {aggregation}")
        windows = [(start, end)] if grain is None else _windows(start, end, grain)
        resource = slot_id(site, slot)
        # What Azure Monitor has ingested: nothing newer than the ingestion delay.
        ingested = self.cloud.now() - self.cloud.timings.metrics_delay_seconds
        value = []
        for name in names:
            unit, label, description = METRICS[name]
            data = []
            for window_start, window_end in windows:
                point: dict[str, Any] = {"timeStamp": _iso(window_start)}
                if window_start >= ingested:
                    data.append(point)  # not ingested yet: a point with no values
                    continue
                requests, errors, latency = slot.metrics.totals(window_start, min(window_end, ingested))
                if name == "Requests":
                    amount, count = float(requests), requests
                elif name == "Http5xx":
                    amount, count = float(errors), errors
                else:
                    amount, count = latency / 1000.0, requests
                for aggregation in aggregations:
                    if aggregation == "total":
                        point["total"] = amount
                    elif aggregation == "count":
                        point["count"] = float(count)
                    elif aggregation == "average" and count:
                        point["average"] = amount / count if name == "HttpResponseTime" else amount
                data.append(point)
            value.append(
                {
                    "id": f"{resource}/providers/Microsoft.Insights/metrics/{name}",
                    "type": "Microsoft.Insights/metrics",
                    "name": {"value": name, "localizedValue": label},
                    "displayDescription": description,
                    "errorCode": "Success",
                    "unit": unit,
                    "timeseries": [{"metadatavalues": [], "data": data}],
                }
            )
        return {
            "cost": 0,
            "timespan": f"{_iso(start)}/{_iso(end)}",
            "interval": "FULL" if grain is None else interval,
            "namespace": "Microsoft.Web/sites" if slot is site.production else "Microsoft.Web/sites/slots",
            "resourceregion": site.location.replace(" ", "").lower(),
            "value": value,
        }


def _parse_time(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ArmError(400, "BadRequest", f"Invalid time in timespan: {text}") from None


def _timespan(text: str | None, now: float) -> tuple[float, float]:
    if not text:
        return now - 3600, now
    parts = text.split("/")
    if len(parts) != 2:
        raise ArmError(400, "BadRequest", "timespan must be 'start/end' in ISO 8601")
    start, end = _parse_time(parts[0]), _parse_time(parts[1])
    if end <= start:
        raise ArmError(400, "BadRequest", "timespan must end after it starts")
    return start, end


def _grain_seconds(interval: str) -> int:
    match = re.fullmatch(r"PT(\d+)([MH])", interval.upper())
    if not match:
        raise ArmError(400, "BadRequest", f"Invalid interval: {interval}; use PT1M, PT5M, PT1H ... or FULL")
    return int(match.group(1)) * (60 if match.group(2) == "M" else 3600)


def _windows(start: float, end: float, grain: int) -> list[tuple[float, float]]:
    first = start - (start % grain)
    out = []
    t = first
    while t < end:
        out.append((max(t, start), min(t + grain, end)))
        t += grain
    return out


def start_arm(api: ArmApi, context: ssl.SSLContext) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "AppServiceEmulator-ARM"

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _dispatch(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            request_id = self.headers.get("x-ms-client-request-id") or ""
            try:
                status, extra, doc = api.handle(self.command, self.path, headers, body)
            except ArmError as error:
                status, extra, doc = error.status, error.headers, error.body()
            payload = b"" if doc is None else json.dumps(doc).encode()
            self.send_response(status)
            if doc is not None:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-ms-request-id", request_id or "emulator")
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch  # noqa: N815  (http.server's names)

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def __init__(self) -> None:
            super().__init__(("127.0.0.1", 0), Handler)
            self.socket = context.wrap_socket(self.socket, server_side=True)

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass

    server = Server()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


__all__ = ["ArmApi", "ArmError", "start_arm"]
