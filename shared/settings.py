"""Typed app settings. Names mirror local.settings.sample.json; docs/configuration lives in the README."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.authority.principals import parse_role_map
from shared.domain.model import Role

SIGNING_KEY_PREFIX = "RELEASE_SIGNING_KEY_"


def _unresolved_reference(value: str | None) -> bool:
    return bool(value) and str(value).lstrip().lower().startswith("@microsoft.keyvault(")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


# Settings the Functions host reads through %NAME% in bindings (never read by the app itself).
BINDING_SETTINGS = (
    "RELEASE_EVENTS_TOPIC",
    "RELEASE_EVENTS_SUBSCRIPTION",
    "RECONCILE_SCHEDULE",
    "WORK_QUEUE_NAME",
)


NOTIFY_PREFIX = "NOTIFY_"
NOTIFY_KINDS = ("teams", "slack", "cloudevents")


@dataclass(frozen=True)
class NotificationSink:
    """One place notifications go (NOTIFY_<NAME>_*): its kind, URL, and what it wants to hear."""

    name: str
    kind: str
    url: str
    sites: frozenset[str] = frozenset()  # lower-case site names; empty: every site
    events: frozenset[str] = frozenset()  # empty: every event
    secret: str | None = None


def _loopback_http(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def notification_sinks(env: Mapping[str, str], unresolved: set[str]) -> tuple[NotificationSink, ...]:
    """The sinks NOTIFY_<NAME>_KIND names. Raises SettingsError naming the setting that is wrong;
    a sink whose URL or secret is an unresolved Key Vault reference is left out (and named)."""
    from shared.domain.lifecycle.alerts import EVENTS

    sinks = []
    for key in sorted(env):
        if not (key.startswith(NOTIFY_PREFIX) and key.endswith("_KIND")) or not env[key]:
            continue
        name = key[len(NOTIFY_PREFIX) : -len("_KIND")]
        base = f"{NOTIFY_PREFIX}{name}"
        kind = env[key].strip().lower()
        if kind not in NOTIFY_KINDS:
            raise SettingsError(f"{key} must be one of {', '.join(NOTIFY_KINDS)}, got {env[key]!r}")
        url, secret = env.get(f"{base}_URL") or "", env.get(f"{base}_SECRET") or None
        for setting, value in ((f"{base}_URL", url), (f"{base}_SECRET", secret)):
            if _unresolved_reference(value):
                unresolved.add(setting)
        if f"{base}_URL" in unresolved or f"{base}_SECRET" in unresolved:
            continue
        if not (url.startswith("https://") or _loopback_http(url)):
            raise SettingsError(f"{base}_URL must be an https:// URL (http only to 127.0.0.1, for local receivers)")
        events = frozenset(e.strip() for e in (env.get(f"{base}_EVENTS") or "").split(",") if e.strip())
        unknown = sorted(events - set(EVENTS))
        if unknown:
            raise SettingsError(f"{base}_EVENTS names unknown events {unknown}; known: {', '.join(EVENTS)}")
        sites = frozenset(x.strip().lower() for x in (env.get(f"{base}_SITES") or "").split(",") if x.strip())
        sinks.append(NotificationSink(name.lower(), kind, url, sites, events, secret))
    return tuple(sinks)


@dataclass(frozen=True)
class Settings:
    store_connection_string: str | None
    store_endpoint: str | None
    table_prefix: str
    reconcile_budget_seconds: float
    reconcile_concurrency: int
    slot_platform: str
    arm_endpoint: str
    arm_scope: str
    arm_ca_bundle: str | None
    arm_polling_interval: float
    arm_retry_total: int
    probe_ca_bundle: str | None
    webhook_secrets: Mapping[str, str]
    azure_monitor_delay_seconds: float = 180.0
    release_policy_path: str = "release-policy.yaml"
    signing_keys: Mapping[str, str] = field(default_factory=dict)
    auth_role_claim: str = "roles"
    auth_role_map: Mapping[str, str] = field(default_factory=dict)
    auth_key_only: bool = False
    auth_key_only_roles: frozenset[str] = frozenset({"reader", "submitter", "operator"})
    trust_client_principal: bool = False
    unresolved_references: tuple[str, ...] = ()
    # The work queue (the queue trigger's connection "WorkQueue": a connection string, or the
    # queue service URI for the managed identity). Neither set: the timer reconciles in-process.
    work_queue_connection: str | None = None
    work_queue_endpoint: str | None = None
    work_queue_name: str = "release-work"
    dispatch_grace_seconds: float = 60.0
    reconcile_period_seconds: float = 30.0
    # The key that signs the dashboard's forms (a Key Vault reference in Azure). Unset: each
    # instance makes its own, and a form sent to another instance asks to be reloaded.
    dashboard_secret: str | None = None
    notification_sinks: tuple[NotificationSink, ...] = ()
    # The app's own host name (App Service sets WEBSITE_HOSTNAME): links to the dashboard.
    public_host: str | None = None

    @property
    def work_queue_enabled(self) -> bool:
        return bool(self.work_queue_connection or self.work_queue_endpoint)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str, default: str | None = None) -> str | None:
            value = env.get(name, default)
            return value if value not in ("", None) else default

        def number(name: str, default: float, low: float, high: float) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise SettingsError(f"{name} must be a number, got {raw!r}") from None
            if not low <= value <= high:
                raise SettingsError(f"{name} must be between {low:g} and {high:g}, got {raw}")
            return value

        connection = get("RELEASE_STORE_CONNECTION")
        endpoint = get("RELEASE_STORE_ENDPOINT")
        if not connection and not endpoint:
            raise SettingsError(
                "set RELEASE_STORE_ENDPOINT (https://<account>.table.core.windows.net, managed identity) "
                "or RELEASE_STORE_CONNECTION (a connection string, for Azurite)"
            )
        platform = get("SLOT_PLATFORM", "appService")
        if platform not in ("appService", "memory"):
            raise SettingsError(f"SLOT_PLATFORM must be 'appService' or 'memory', got {platform!r}")
        arm_endpoint = get("ARM_ENDPOINT", "https://management.azure.com") or ""
        if not arm_endpoint.startswith("https://"):
            raise SettingsError("ARM_ENDPOINT must be an https:// URL (bearer tokens are never sent in clear)")
        prefix = get("RELEASE_STORE_TABLE_PREFIX", "") or ""
        if prefix and not (prefix.isalnum() and prefix[0].isalpha()):
            raise SettingsError("RELEASE_STORE_TABLE_PREFIX must be letters and digits, starting with a letter")
        # A Key Vault reference App Service could not resolve reaches the app as its own text, which
        # anyone can read in the template: never a key. Such settings are named in `unresolved`.
        unresolved = tuple(
            sorted(
                name
                for name, value in env.items()
                if (name.startswith(("WEBHOOK_SECRET_", SIGNING_KEY_PREFIX)) or name == "DASHBOARD_SECRET")
                and _unresolved_reference(value)
            )
        )
        unresolved_sinks: set[str] = set()
        sinks = notification_sinks(env, unresolved_sinks)
        unresolved = tuple(sorted({*unresolved, *unresolved_sinks}))
        secrets = {
            name: value
            for name, value in env.items()
            if name.startswith("WEBHOOK_SECRET_") and value and name not in unresolved
        }
        signing_keys = {
            name.removeprefix(SIGNING_KEY_PREFIX): value
            for name, value in env.items()
            if name.startswith(SIGNING_KEY_PREFIX)
            and len(name) > len(SIGNING_KEY_PREFIX)
            and value
            and name not in unresolved
        }
        roles = {r.value for r in Role}
        try:
            role_map = {value: role.value for value, role in parse_role_map(get("AUTH_ROLE_MAP", "") or "").items()}
        except ValueError:
            raise SettingsError(
                f"AUTH_ROLE_MAP must be 'AppRoleValue=role,...' with roles among {', '.join(sorted(roles))}"
            ) from None
        key_only_roles = {r.strip() for r in (get("AUTH_KEY_ONLY_ROLES", "reader,submitter,operator") or "").split(",")}
        key_only_roles.discard("")
        if not key_only_roles <= roles - {"approver", "admin"}:
            raise SettingsError("AUTH_KEY_ONLY_ROLES may name reader, submitter and operator only (never approver)")
        return cls(
            store_connection_string=connection,
            store_endpoint=endpoint,
            table_prefix=prefix,
            reconcile_budget_seconds=number("RECONCILE_BUDGET_SECONDS", 240, 1, 3600),
            reconcile_concurrency=int(number("RECONCILE_CONCURRENCY", 4, 1, 64)),
            slot_platform=platform,
            arm_endpoint=arm_endpoint.rstrip("/"),
            arm_scope=get("ARM_SCOPE", "https://management.azure.com/.default") or "",
            arm_ca_bundle=get("ARM_CA_BUNDLE"),
            arm_polling_interval=number("ARM_POLLING_INTERVAL", 30, 0, 300),
            arm_retry_total=int(number("ARM_RETRY_TOTAL", 3, 0, 10)),
            probe_ca_bundle=get("PROBE_CA_BUNDLE"),
            webhook_secrets=secrets,
            # How long Azure Monitor takes to have a minute of platform metrics complete.
            azure_monitor_delay_seconds=number("AZURE_MONITOR_DELAY_SECONDS", 180, 0, 1800),
            release_policy_path=get("RELEASE_POLICY_PATH", "release-policy.yaml") or "release-policy.yaml",
            signing_keys=signing_keys,
            auth_role_claim=get("AUTH_ROLE_CLAIM", "roles") or "roles",
            auth_role_map=role_map,
            auth_key_only=(get("AUTH_KEY_ONLY", "") or "").lower() == "true",
            auth_key_only_roles=frozenset(key_only_roles),
            # Set by App Service when its authentication is on; only then are X-MS-CLIENT-PRINCIPAL
            # headers the platform's (it strips any a client sends).
            trust_client_principal=(get("WEBSITE_AUTH_ENABLED", "") or "").lower() == "true",
            unresolved_references=unresolved,
            work_queue_connection=get("WorkQueue"),
            work_queue_endpoint=get("WorkQueue__queueServiceUri"),
            work_queue_name=get("WORK_QUEUE_NAME", "release-work") or "release-work",
            dispatch_grace_seconds=number("DISPATCH_GRACE_SECONDS", 60, 5, 3600),
            reconcile_period_seconds=schedule_period(get("RECONCILE_SCHEDULE", "*/30 * * * * *") or ""),
            notification_sinks=sinks,
            public_host=get("WEBSITE_HOSTNAME"),
            dashboard_secret=None if _unresolved_reference(get("DASHBOARD_SECRET")) else get("DASHBOARD_SECRET"),
        )


def schedule_period(cron: str) -> float:
    """Seconds between the timer's ticks for the usual six-field forms (``*/N * * * * *``,
    ``0 */N * * * *``); 30 for any other (used only to pace the timer's re-sends)."""
    fields = cron.split()
    if len(fields) == 6:
        seconds, minutes = fields[0], fields[1]
        if seconds.startswith("*/") and seconds[2:].isdigit() and fields[1:] == ["*"] * 5:
            return float(max(1, int(seconds[2:])))
        if seconds == "0" and minutes.startswith("*/") and minutes[2:].isdigit() and fields[2:] == ["*"] * 4:
            return 60.0 * max(1, int(minutes[2:]))
    return 30.0
