"""Composition root: settings -> adapters -> service, built lazily once per worker process.

Heavy SDKs (azure.identity, azure.mgmt.web) are imported here, on first use, never at module
import, so the Functions host indexes the app quickly.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.service import ReleaseService
    from shared.settings import Settings

APP_ROOT = Path(__file__).resolve().parent.parent

log = logging.getLogger("release_controller.bootstrap")


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class LoggingNotifier:
    """Alerts go to the log at warning/error level, where Azure Monitor alert rules pick them up."""

    def notify(self, release: Any, severity: str, message: str) -> None:
        level = logging.ERROR if severity == "error" else logging.WARNING
        logging.getLogger("release_controller.alerts").log(
            level, "ALERT %s: %s", severity, message, extra={"releaseId": release.id}
        )


@dataclass
class Container:
    settings: Settings
    service: ReleaseService
    parts: dict[str, Any]


_container: Container | None = None
_lock = threading.Lock()


def _default_credential() -> Any:
    """The Function App's managed identity in Azure (AZURE_CLIENT_ID picks a user-assigned one)."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def build(settings: Settings, *, credential: Any = None) -> Container:
    """Wire the adapters the settings ask for. ``credential`` replaces DefaultAzureCredential (the
    local host passes one for the App Service emulator)."""
    from shared import telemetry
    from shared.adapters.table_store import TableReleaseStore
    from shared.service import ReleaseService

    telemetry.configure()  # before any Azure client is made, so their calls are traced

    if settings.store_connection_string:
        store = TableReleaseStore.from_connection_string(settings.store_connection_string, prefix=settings.table_prefix)
    else:
        assert settings.store_endpoint is not None
        store = TableReleaseStore.from_endpoint(
            settings.store_endpoint, credential or _default_credential(), prefix=settings.table_prefix
        )
    parts: dict[str, Any] = {"store": store}
    for name in settings.unresolved_references:
        log.error(
            "app setting %s is a Key Vault reference App Service could not resolve: it is not used as a key "
            "(check the app's identity has Key Vault Secrets User and the secret exists)",
            name,
        )
    if settings.slot_platform == "memory":
        from shared.adapters.memory import InMemorySlotPlatform, ScriptedAnalyzer, ScriptedValidator

        platform: Any = InMemorySlotPlatform()
        validator: Any = ScriptedValidator()
        analyzer: Any = ScriptedAnalyzer()
        log.warning("SLOT_PLATFORM=memory: simulated slots; nothing is deployed anywhere")
    else:
        from shared.adapters.analysis import ProviderAnalyzer
        from shared.adapters.appservice import AppServiceSlotPlatform
        from shared.adapters.probes import HttpValidator

        platform = AppServiceSlotPlatform.from_settings(settings, credential or _default_credential())
        validator = HttpValidator(ca_bundle=settings.probe_ca_bundle)
        analyzer = ProviderAnalyzer.from_settings(settings, platform)
    parts.update(platform=platform, validator=validator, analyzer=analyzer)
    authority, policy_document = build_authority(settings)
    parts.update(authority=authority, policy_document=policy_document)
    work_queue = None
    if settings.work_queue_enabled:
        from shared.adapters.work_queue import StorageWorkQueue

        if settings.work_queue_connection:
            work_queue = StorageWorkQueue.from_connection_string(
                settings.work_queue_connection, settings.work_queue_name
            )
        else:
            assert settings.work_queue_endpoint is not None
            work_queue = StorageWorkQueue.from_endpoint(
                settings.work_queue_endpoint, settings.work_queue_name, credential or _default_credential()
            )
        parts["work_queue"] = work_queue
    notifications = None
    if settings.notification_sinks:
        from shared.adapters.notifications import WebhookNotifications

        notifications = WebhookNotifications(settings.notification_sinks, public_host=settings.public_host)
    service = ReleaseService(
        store,
        platform,
        validator,
        analyzer,
        LoggingNotifier(),
        SystemClock(),
        authority=authority,
        work_queue=work_queue,
        notifications=notifications,
    )
    return Container(settings=settings, service=service, parts=parts)


def policy_path(settings: Settings) -> Path:
    """The policy file: as given, or relative to the app's root (where function_app.py is)."""
    path = Path(settings.release_policy_path)
    return path if path.is_absolute() else APP_ROOT / path


def build_authority(settings: Settings) -> tuple[Any, dict[str, Any]]:
    """The release policy (validated now: a bad policy stops the app from starting, loudly) and
    the proofs events may carry."""
    from shared.authority.gatekeeper import Gatekeeper
    from shared.authority.policy_file import load_policy
    from shared.authority.proofs import EventVerifier, OidcVerifier

    policy, document = load_policy(policy_path(settings))
    oidc = OidcVerifier(policy.issuers) if policy.issuers else None
    return Gatekeeper(policy, EventVerifier(settings.signing_keys, oidc)), document


def access_settings(settings: Settings) -> Any:
    from shared.authority.principals import AccessSettings
    from shared.domain.model import Role

    return AccessSettings(
        authentication_on=settings.trust_client_principal,
        role_claim=settings.auth_role_claim,
        role_map={value: Role(role) for value, role in settings.auth_role_map.items()} or None,
        key_only=settings.auth_key_only,
        key_only_roles=frozenset(Role(r) for r in settings.auth_key_only_roles),
    )


def container() -> Container:
    global _container
    if _container is None:
        with _lock:
            if _container is None:
                from shared.settings import Settings

                _container = build(Settings.from_env())
    return _container


def get_service() -> ReleaseService:
    return container().service


def use(replacement: Container | None) -> None:
    """Swap the composition root (tests, the local host); None rebuilds from settings on next use."""
    global _container
    with _lock:
        _container = replacement
