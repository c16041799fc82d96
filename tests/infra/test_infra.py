"""What can be checked of infra/ without a Bicep compiler: the app settings the template sets against the
ones the code reads, role ids and api-versions against tables verified in Microsoft's documentation and
REST specs, the alert rule against what the notifier logs, and the Bicep files' structure."""

from __future__ import annotations

import ast
import json
import logging
import re
import typing
import uuid
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import pytest

from shared.domain.model import Alert, Role
from shared.settings import NOTIFY_PREFIX, SIGNING_KEY_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
FUNCTION_APP = INFRA / "modules" / "functionapp.bicep"
ALERTS = INFRA / "modules" / "alerts.bicep"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

WEBHOOK_SECRET_PREFIX = "WEBHOOK_SECRET_"

# Built-in role ids, each checked against Microsoft's "Azure built-in roles" reference
# (MicrosoftDocs/azure-docs, articles/role-based-access-control/built-in-roles.md, ms.date 04/09/2026).
BUILT_IN_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "090c5cfd-751d-490a-894a-3ce6f1109419": "Azure Service Bus Data Owner",
    "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0": "Azure Service Bus Data Receiver",
    "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39": "Azure Service Bus Data Sender",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "43d0d8ad-25c7-4714-9337-8ba259a9fe05": "Monitoring Reader",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "de139f84-1756-47ae-9be6-808fbbe84772": "Website Contributor",
}

# The least-privilege set the templates grant, and nothing broader.
GRANTED_ROLES = {
    "Storage Blob Data Owner",  # host storage (identity-based AzureWebJobsStorage) and the deployment container
    "Storage Table Data Contributor",  # release store; the host's diagnostic events
    "Storage Queue Data Contributor",  # the work queue and its poison queue
    "Azure Service Bus Data Receiver",  # the controller's subscription
    "Azure Service Bus Data Sender",  # CI, on the topic
    "Key Vault Secrets User",  # Key Vault references
    "Key Vault Secrets Officer",  # the person or group who writes the secrets
    "Monitoring Metrics Publisher",  # Entra ID telemetry ingestion
    "Monitoring Reader",  # optional, on target resource groups
}

# (resource type, api-version) pairs, each found as a stable version in Azure/azure-rest-api-specs
# (specification/<service>/resource-manager/<namespace>/stable/<version>/...).
VERIFIED_API_VERSIONS = {
    ("Microsoft.ManagedIdentity/userAssignedIdentities", "2023-01-31"),
    ("Microsoft.Storage/storageAccounts", "2023-05-01"),
    ("Microsoft.Storage/storageAccounts/blobServices", "2023-05-01"),
    ("Microsoft.Storage/storageAccounts/blobServices/containers", "2023-05-01"),
    ("Microsoft.Storage/storageAccounts/queueServices", "2023-05-01"),
    ("Microsoft.Storage/storageAccounts/queueServices/queues", "2023-05-01"),
    ("Microsoft.ServiceBus/namespaces", "2024-01-01"),
    ("Microsoft.ServiceBus/namespaces/topics", "2024-01-01"),
    ("Microsoft.ServiceBus/namespaces/topics/subscriptions", "2024-01-01"),
    ("Microsoft.KeyVault/vaults", "2023-07-01"),
    ("Microsoft.OperationalInsights/workspaces", "2023-09-01"),
    ("Microsoft.Insights/components", "2020-02-02"),
    ("Microsoft.Insights/actionGroups", "2023-01-01"),
    ("Microsoft.Insights/scheduledQueryRules", "2023-12-01"),
    ("Microsoft.Web/serverfarms", "2024-04-01"),
    ("Microsoft.Web/sites", "2024-04-01"),
    ("Microsoft.Web/sites/config", "2024-04-01"),
    ("Microsoft.Authorization/roleAssignments", "2022-04-01"),
}

# Settings the code reads that the template leaves unset in Azure, on purpose.
NOT_SET_IN_AZURE = {
    "RELEASE_STORE_CONNECTION": "a connection string, for Azurite; Azure uses RELEASE_STORE_ENDPOINT and the identity",
    "WorkQueue": "a connection string, for Azurite; Azure uses WorkQueue__queueServiceUri and the identity",
    "ARM_CA_BUNDLE": "trusts the local App Service emulator's CA",
    "PROBE_CA_BUNDLE": "trusts the local App Service emulator's CA",
    "AUTH_KEY_ONLY_ROLES": "roles of key-only mode, which the template pins off (AUTH_KEY_ONLY=false)",
    # Set by hand, the app would trust X-MS-CLIENT-PRINCIPAL headers nobody vouches for.
    "WEBSITE_AUTH_ENABLED": "set by the platform when App Service authentication is on",
    "WEBSITE_HOSTNAME": "set by the platform: the app's host name, for links to the dashboard",
}

# Settings the template sets that the Functions host or the platform reads, not the app's code.
PLATFORM_SETTINGS = {
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "the Functions host's telemetry destination",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Entra ID ingestion with the user-assigned identity",
    "AZURE_CLIENT_ID": "azure-identity's DefaultAzureCredential: which managed identity to use",
}
# Suffixes of an identity-based connection the Functions host reads (<connection>__<suffix>).
CONNECTION_SUFFIXES = {"accountName", "fullyQualifiedNamespace", "queueServiceUri", "credential", "clientId"}
HOST_STORAGE = "AzureWebJobsStorage"

# Settings only the local Functions host needs (local.settings.sample.json, never the template).
LOCAL_HOST_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME": "Flex Consumption takes the runtime from functionAppConfig",
    "AzureWebJobsFeatureFlags": "worker indexing for older Core Tools",
    "AzureWebJobsStorage": "the host storage as a connection string (Azurite)",
}

# Settings the template must never set in Azure.
NEVER_IN_AZURE = {
    "WEBSITE_AUTH_ENABLED",
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "AzureWebJobsStorage",
    "ServiceBusConnection",
    "RELEASE_STORE_CONNECTION",
    "WorkQueue",
}

GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


# -- a small Bicep reader ---------------------------------------------------------------------------------


def blank(text: str) -> str:
    """The text with comments and the literal parts of strings replaced by spaces (same length, same lines),
    keeping the code of ${...} interpolations; raises on an unterminated string or comment."""
    out = list(text)
    interpolations: list[int] = []  # brace depth inside each open interpolation
    in_string = False
    i = 0
    while i < len(text):
        c = text[i]
        if in_string:
            if c == "\\":
                out[i] = " "
                if i + 1 < len(text) and text[i + 1] != "\n":
                    out[i + 1] = " "
                i += 2
            elif text.startswith("${", i):
                out[i] = " "
                interpolations.append(0)
                in_string = False
                i += 2
            elif c == "'":
                in_string = False
                i += 1
            elif c == "\n":
                raise ValueError(f"unterminated string at offset {i}")
            else:
                out[i] = " "
                i += 1
            continue
        if text.startswith("'''", i):
            end = text.find("'''", i + 3)
            if end < 0:
                raise ValueError(f"unterminated multi-line string at offset {i}")
            for j in range(i + 3, end):
                out[j] = out[j] if text[j] == "\n" else " "
            i = end + 3
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            for j in range(i, end):
                out[j] = " "
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise ValueError(f"unterminated comment at offset {i}")
            for j in range(i, end + 2):
                out[j] = out[j] if text[j] == "\n" else " "
            i = end + 2
        elif c == "'":
            in_string = True
            i += 1
        elif c == "}" and interpolations and interpolations[-1] == 0:
            interpolations.pop()
            in_string = True
            i += 1
        else:
            if interpolations and c in "{}":
                interpolations[-1] += 1 if c == "{" else -1
            i += 1
    if in_string or interpolations:
        raise ValueError("unterminated string at the end of the file")
    return "".join(out)


@cache
def source(path: Path) -> tuple[str, str]:
    text = path.read_text()
    return text, blank(text)


def block_span(code: str, start: int) -> tuple[int, int]:
    """Offsets of the braces of the {...} block that opens at or after ``start`` in blanked code."""
    opening = code.index("{", start)
    depth = 0
    for i in range(opening, len(code)):
        depth += {"{": 1, "}": -1}.get(code[i], 0)
        if depth == 0:
            return opening, i
    raise ValueError("unbalanced block")


def block_after(code: str, start: int) -> str:
    opening, closing = block_span(code, start)
    return code[opening + 1 : closing]


def top_level_keys(block: str) -> list[str]:
    keys, depth = [], 0
    for line in block.splitlines():
        match = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*:", line)
        if depth == 0 and match:
            keys.append(match.group(1))
        depth += sum({"{": 1, "}": -1, "[": 1, "]": -1}.get(c, 0) for c in line)
    return keys


def params(path: Path) -> dict[str, bool]:
    """Declared parameters and whether each has a default."""
    _, code = source(path)
    return {m.group(1): "=" in m.group(0) for m in re.finditer(r"(?m)^param\s+(\w+)\s[^\n]*", code)}


def resources(path: Path) -> list[tuple[str, str, str]]:
    text, code = source(path)
    found = []
    for line, code_line in zip(text.splitlines(), code.splitlines(), strict=True):
        if code_line.startswith("resource "):
            match = re.match(r"resource\s+(\w+)\s+'([^'@]+)@([^']+)'", line)
            assert match, f"{path.name}: cannot read {line!r}"
            found.append(match.groups())
    return found


def modules(path: Path) -> list[tuple[str, str, int]]:
    text, code = source(path)
    found, offset = [], 0
    for line, code_line in zip(text.splitlines(keepends=True), code.splitlines(keepends=True), strict=True):
        if code_line.startswith("module "):
            match = re.match(r"module\s+(\w+)\s+'([^']+)'", line)
            assert match, f"{path.name}: cannot read {line!r}"
            found.append((match.group(1), match.group(2), offset))
        offset += len(line)
    return found


# -- what the code reads ----------------------------------------------------------------------------------


class RecordingEnv(dict):
    def __init__(self, values: dict[str, str]):
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)


@cache
def code_reads() -> frozenset[str]:
    """Every fixed setting name the app reads: through Settings.from_env, and any os.environ / os.getenv
    elsewhere in the app's code."""
    env = RecordingEnv({"RELEASE_STORE_ENDPOINT": "https://example.table.core.windows.net"})
    Settings.from_env(env)
    names = set(env.read)
    for path in [ROOT / "function_app.py", *(ROOT / "shared").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            target = None
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                if ast.unparse(node.func) in ("os.getenv", "os.environ.get", "environ.get", "getenv"):
                    target = node.args[0].value
            elif (
                isinstance(node, ast.Subscript)
                and ast.unparse(node.value) in ("os.environ", "environ")
                and isinstance(node.slice, ast.Constant)
            ):
                target = node.slice.value
            if isinstance(target, str):
                names.add(target)
    return frozenset(names)


@cache
def bindings() -> tuple[frozenset[str], frozenset[str]]:
    """(%NAME% settings, connection names) of the trigger bindings in functions/."""
    settings, connections = set(), set()
    for path in (ROOT / "functions").glob("*.py"):
        text = path.read_text()
        settings |= set(re.findall(r"[\"']%([A-Za-z_][A-Za-z0-9_]*)%[\"']", text))
        connections |= set(re.findall(r"connection\s*=\s*\"([^\"]+)\"", text))
    return frozenset(settings), frozenset(connections)


@cache
def template_settings() -> tuple[dict[str, str], set[str]]:
    """(fixed app settings with their value expressions, setting-name prefixes built from parameters)."""
    text, code = source(FUNCTION_APP)
    start = code.index("var appSettings = {")
    block = block_after(code, start)
    values = {}
    for key in top_level_keys(block):
        line = next(ln for ln in text[start:].splitlines() if re.match(rf"\s*{key}\s*:", ln))
        values[key] = line.split(":", 1)[1].strip()
    families = {
        prefix for prefix in (SIGNING_KEY_PREFIX, WEBHOOK_SECRET_PREFIX, NOTIFY_PREFIX) if f"'{prefix}${{" in text
    }
    return values, families


def sample_settings() -> dict[str, str]:
    return json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]


# -- (a) app settings -------------------------------------------------------------------------------------


def test_the_setting_families_are_what_settings_reads():
    env = {"RELEASE_STORE_ENDPOINT": "https://x", f"{SIGNING_KEY_PREFIX}PROBE": "k", f"{WEBHOOK_SECRET_PREFIX}P": "s"}
    settings = Settings.from_env(env)
    assert settings.signing_keys == {"PROBE": "k"}
    assert dict(settings.webhook_secrets) == {f"{WEBHOOK_SECRET_PREFIX}P": "s"}


def test_every_setting_the_code_reads_is_set_by_the_template():
    values, families = template_settings()
    setting_names, connections = bindings()
    missing = sorted((code_reads() | setting_names) - set(values) - set(NOT_SET_IN_AZURE))
    assert not missing, f"set these in infra/modules/functionapp.bicep (or explain why not): {missing}"
    assert families == {SIGNING_KEY_PREFIX, WEBHOOK_SECRET_PREFIX, NOTIFY_PREFIX}
    for connection in connections | {HOST_STORAGE}:
        assert f"{connection}__credential" in values, connection
        assert f"{connection}__clientId" in values, connection
    assert {f"{c}__fullyQualifiedNamespace" for c in connections if c.startswith("ServiceBus")} <= set(values)
    assert {f"{c}__queueServiceUri" for c in connections if c == "WorkQueue"} <= set(values)
    assert f"{HOST_STORAGE}__accountName" in values


def test_every_setting_the_template_sets_is_read_by_someone():
    values, _ = template_settings()
    setting_names, connections = bindings()
    host = {f"{c}__{suffix}" for c in connections | {HOST_STORAGE} for suffix in CONNECTION_SUFFIXES}
    unread = sorted(set(values) - code_reads() - setting_names - host - set(PLATFORM_SETTINGS))
    assert not unread, f"nothing reads these app settings: {unread}"


def test_azure_client_id_is_what_default_azure_credential_reads():
    from azure.identity._constants import EnvironmentVariables

    assert EnvironmentVariables.AZURE_CLIENT_ID == "AZURE_CLIENT_ID"


def test_the_template_never_sets_platform_owned_or_local_only_settings():
    values, _ = template_settings()
    assert not NEVER_IN_AZURE & set(values)
    assert values["AUTH_KEY_ONLY"] == "'false'"
    assert NOT_SET_IN_AZURE.keys() <= code_reads(), "the allow-list names a setting the code no longer reads"


def test_identity_based_connections_use_the_user_assigned_identity():
    values, _ = template_settings()
    for name, value in values.items():
        if name.endswith("__credential"):
            assert value == "'managedidentity'", name
        if name.endswith("__clientId") or name == "AZURE_CLIENT_ID":
            assert value == "identityClientId", name
    assert "ClientId=${identityClientId}" in values["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]


def test_every_setting_the_code_reads_is_in_the_sample_settings():
    sample = sample_settings()
    setting_names, connections = bindings()
    missing = sorted((code_reads() | setting_names | connections) - set(sample))
    assert not missing, f"add these to local.settings.sample.json: {missing}"
    for prefix in (SIGNING_KEY_PREFIX, WEBHOOK_SECRET_PREFIX):
        assert any(name.startswith(prefix) for name in sample), f"no {prefix}* example in the sample"


def test_every_sample_setting_is_read_by_someone():
    setting_names, connections = bindings()
    known = code_reads() | setting_names | connections | set(LOCAL_HOST_SETTINGS)
    unread = sorted(
        n for n in sample_settings() if n not in known and not n.startswith((SIGNING_KEY_PREFIX, WEBHOOK_SECRET_PREFIX))
    )
    assert not unread, f"nothing reads these sample settings: {unread}"


# Template parameter -> the app setting whose default it must agree with (README, Settings, sample).
PARAMETER_DEFAULTS = {
    "releaseEventsTopic": "RELEASE_EVENTS_TOPIC",
    "releaseEventsSubscription": "RELEASE_EVENTS_SUBSCRIPTION",
    "reconcileSchedule": "RECONCILE_SCHEDULE",
    "reconcileBudgetSeconds": "RECONCILE_BUDGET_SECONDS",
    "reconcileConcurrency": "RECONCILE_CONCURRENCY",
    "slotPlatform": "SLOT_PLATFORM",
    "armPollingInterval": "ARM_POLLING_INTERVAL",
    "armRetryTotal": "ARM_RETRY_TOTAL",
    "azureMonitorDelaySeconds": "AZURE_MONITOR_DELAY_SECONDS",
    "releasePolicyPath": "RELEASE_POLICY_PATH",
    "authRoleClaim": "AUTH_ROLE_CLAIM",
    "authRoleMap": "AUTH_ROLE_MAP",
    "releaseStoreTablePrefix": "RELEASE_STORE_TABLE_PREFIX",
    "workQueueName": "WORK_QUEUE_NAME",
    "dispatchGraceSeconds": "DISPATCH_GRACE_SECONDS",
}


def test_template_defaults_agree_with_the_sample_settings():
    text, _ = source(MAIN)
    sample = sample_settings()
    for parameter, setting in PARAMETER_DEFAULTS.items():
        match = re.search(rf"(?m)^param {parameter} \w+ = (.+)$", text)
        assert match, parameter
        default = match.group(1).strip().strip("'")
        assert default == sample[setting], f"{parameter} defaults to {default!r}, the sample has {sample[setting]!r}"


# -- (b) role ids -----------------------------------------------------------------------------------------


def test_every_role_id_in_the_templates_is_a_verified_built_in_role():
    for path in BICEP_FILES:
        text, _ = source(path)
        for line in text.splitlines():
            for guid in GUID.findall(line):
                assert guid.lower() in BUILT_IN_ROLES, f"{path.name}: {guid} is not a verified built-in role id"
                comment = line.split("//", 1)[1].strip() if "//" in line else None
                if comment:
                    assert comment == BUILT_IN_ROLES[guid.lower()], f"{path.name}: {guid} is not {comment!r}"


def test_the_templates_grant_exactly_the_least_privilege_roles():
    granted = {BUILT_IN_ROLES[g.lower()] for path in BICEP_FILES for g in GUID.findall(source(path)[0])}
    assert granted == GRANTED_ROLES


def test_the_custom_role_is_assigned_from_a_parameter_on_target_resource_groups_only():
    role = json.loads((INFRA / "release-controller-role.json").read_text())
    assert role["IsCustom"] is True
    assert "Microsoft.Insights/metrics/read" in role["Actions"], "Monitoring Reader is optional only because of this"
    text, _ = source(INFRA / "modules" / "target-access.bicep")
    assert "roleDefinitions', roleDefinitionId)" in text
    main, _ = source(MAIN)
    assert "scope: resourceGroup(target.subscriptionId, target.resourceGroup)" in main


def test_the_app_roles_are_the_controller_roles():
    roles = json.loads((INFRA / "entra-app-roles.json").read_text())
    assert {r["value"] for r in roles} == {r.value for r in Role}
    assert len({uuid.UUID(r["id"]) for r in roles}) == len(roles)
    by_value = {r["value"]: r for r in roles}
    assert by_value[Role.APPROVER.value]["allowedMemberTypes"] == ["User"], "approvals come from people only"
    assert "Application" in by_value[Role.SUBMITTER.value]["allowedMemberTypes"], "pipelines may submit over HTTP"
    assert all(r["isEnabled"] for r in roles)


# -- (c) api-versions -------------------------------------------------------------------------------------


def test_every_resource_uses_a_verified_api_version():
    used = {(kind, version) for path in BICEP_FILES for _, kind, version in resources(path)}
    unverified = sorted(used - VERIFIED_API_VERSIONS)
    assert not unverified, f"verify these (type, api-version) pairs and add them to the table: {unverified}"
    assert not any(version.endswith("-preview") for _, version in used)


# -- (d) structure ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_brackets_balance_and_strings_end(path: Path):
    _, code = source(path)
    stack = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for line_number, line in enumerate(code.splitlines(), 1):
        for c in line:
            if c in "([{":
                stack.append((c, line_number))
            elif c in pairs:
                assert stack, f"{path.name}:{line_number}: unexpected {c}"
                opening, opened_at = stack.pop()
                assert opening == pairs[c], f"{path.name}:{line_number}: {c} closes {opening} of line {opened_at}"
    assert not stack, f"{path.name}: unclosed {stack}"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_parameter_is_used(path: Path):
    _, code = source(path)
    for name in params(path):
        # Declared once; used anywhere else but as an object key (name: ...).
        uses = len(re.findall(rf"\b{name}\b", code)) - len(re.findall(rf"(?m)^\s*{name}\s*:", code))
        assert uses > 1, f"{path.name}: param {name} is never used"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_module_exists_and_gets_the_parameters_it_declares(path: Path):
    _, code = source(path)
    for symbol, relative, offset in modules(path):
        module_path = (path.parent / relative).resolve()
        assert module_path.is_file(), f"{path.name}: module {symbol} points at a missing {relative}"
        declared = params(module_path)
        given = set(top_level_keys(block_after(code, code.index("params:", offset))))
        assert given <= set(declared), f"{symbol}: no such parameters in {relative}: {sorted(given - set(declared))}"
        required = {name for name, has_default in declared.items() if not has_default}
        assert required <= given, f"{symbol}: parameters {sorted(required - given)} of {relative} are not given"
        outputs = set(re.findall(r"(?m)^output\s+(\w+)\s", source(module_path)[1]))
        for used in re.findall(rf"\b{symbol}\.outputs\.(\w+)", code):
            assert used in outputs, f"{path.name}: {relative} has no output {used}"


def test_the_example_parameters_fit_the_template():
    given = set(json.loads((INFRA / "main.parameters.json").read_text())["parameters"])
    declared = params(MAIN)
    assert given <= set(declared), sorted(given - set(declared))
    assert {name for name, has_default in declared.items() if not has_default} <= given


# -- what the templates promise ---------------------------------------------------------------------------


def test_the_alert_rules_match_what_the_notifier_logs():
    from shared.bootstrap import LoggingNotifier

    text, _ = source(ALERTS)
    prefixes = dict(zip(re.findall(r"key: '(\w+)'", text), re.findall(r"prefix: '([^']+)'", text), strict=True))
    assert 'startswith "${rule.prefix}"' in text
    # Info notifications (a step started, a release succeeded) go to the configured sinks only, never to
    # the log the alert rules watch.
    severities = set(typing.get_args(typing.get_type_hints(Alert)["severity"])) - {"info"}
    assert set(prefixes) == severities

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("release_controller.alerts")
    logger.addHandler(handler)
    try:
        for severity in sorted(severities):
            LoggingNotifier().notify(SimpleNamespace(id="web-1.2.0"), severity, "rolled back: 30% errors")
    finally:
        logger.removeHandler(handler)
    for severity, record in zip(sorted(severities), records, strict=True):
        assert record.getMessage().startswith(prefixes[severity]), (severity, record.getMessage())
        assert record.levelno >= logging.WARNING, "host.json keeps warnings and above"


def test_authentication_requires_a_token_except_on_the_anonymous_routes():
    text, code = source(FUNCTION_APP)
    resource = code.index("resource authentication ")
    opening, closing = block_span(code, resource)
    auth = text[opening:closing]
    assert "name: 'authsettingsV2'" in auth
    assert "requireAuthentication: true" in auth
    assert "unauthenticatedClientAction: 'Return401'" in auth
    prefix = json.loads((ROOT / "host.json").read_text())["extensions"]["http"]["routePrefix"]
    routes = (ROOT / "functions" / "http_api.py").read_text()
    anonymous = re.findall(r"route=\"([^\"]+)\"[^)]*auth_level=func\.AuthLevel\.ANONYMOUS", routes)
    excluded = re.findall(r"'(/[^']*)'", auth[auth.index("excludedPaths") :].split("]", 1)[0])
    assert sorted(excluded) == sorted(f"/{prefix}/{route}" for route in anonymous)


def test_service_bus_entities_keep_order_and_never_lose_an_event():
    text, _ = source(INFRA / "modules" / "servicebus.bicep")
    for setting in (
        "requiresDuplicateDetection: true",
        "requiresSession: true",
        "deadLetteringOnMessageExpiration: true",
        "maxDeliveryCount: maxDeliveryCount",
        "disableLocalAuth: true",
    ):
        assert setting in text, setting


def test_the_function_app_runs_the_python_the_project_targets():
    text, _ = source(FUNCTION_APP)
    assert "name: 'FC1'" in text and "tier: 'FlexConsumption'" in text
    assert re.search(r"name: 'python'\s+version: '3.11'", text)
    assert ">=3.11,<3.12" in (ROOT / "pyproject.toml").read_text()
