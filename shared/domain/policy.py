"""The platform team's release policy, and what it makes of a release event. Pure: no I/O.

A policy is an ordered list of target rules; the first rule whose patterns match the event's
subscription, resource group and site applies, and an event no rule covers is refused (default
deny). A rule says who may release there (``sources``), what may be released (artifact sources,
app setting keys) and the least safety every release there gets (approvals, the two-person rule,
floors on the plan, required gates). An event may ask for more safety than its rule, never less:
approvals the rule requires are applied whatever the event says; a plan weaker than the rule's
floors is refused with what to change.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qsl, urlsplit

from shared.domain.model import (
    Actor,
    ActorKind,
    ApprovalRule,
    EffectivePolicy,
    Promotion,
    ProviderKind,
    ReleaseSpec,
    Role,
    StrategyKind,
)
from shared.domain.windows import Schedule

# App settings no release may set, whatever the policy (the controller's own stamps).
RESERVED_SETTINGS = ("RELEASE_ID", "RELEASE_VERSION", "RELEASE_OWNED_SETTINGS", "WEBSITE_RUN_FROM_PACKAGE")
# App settings a release may not set unless its rule allows the key: they change how the platform
# runs or pulls the app, or what it trusts, rather than what the app does.
DEFAULT_FORBIDDEN_SETTINGS = (
    "WEBSITE_*",
    "DOCKER_*",
    "SCM_*",
    "APPLICATIONINSIGHTS_*",
    "APPINSIGHTS_*",
    "NODE_OPTIONS",
    "JAVA_OPTS",
    "JAVA_TOOL_OPTIONS",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "LD_PRELOAD",
    "DOTNET_STARTUP_HOOKS",
    "AzureWebJobs*",
    "FUNCTIONS_*",
)
KEY_VAULT_REFERENCE = re.compile(r"\A@Microsoft\.KeyVault\((SecretUri|VaultName)=[^)]+\)\Z")
CREDENTIAL_QUERY_KEYS = frozenset({"sig", "sv", "se", "token", "access_token", "code", "key", "password", "secret"})
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}\Z")


class PolicyRefusal(Exception):
    """The policy does not allow this release; ``errors`` are (field, why) pairs."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{f or '(event)'}: {m}" for f, m in errors))


@dataclass(frozen=True)
class Origin:
    """Where a release event verifiably came from."""

    actor: Actor
    key_id: str | None = None  # an HMAC signature's key
    issuer: str | None = None  # a CI token's issuer, by its name in the policy
    claims: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """One kind of origin a rule accepts: a signing key, a CI identity whose token claims match
    patterns, or a signed-in person with a role (and optionally in a group)."""

    hmac_key: str | None = None
    oidc_issuer: str | None = None
    claims: Mapping[str, str] = field(default_factory=dict)
    person_role: Role | None = None
    person_groups: tuple[str, ...] = ()

    def accepts(self, origin: Origin) -> bool:
        actor = origin.actor
        if self.hmac_key is not None:
            return origin.key_id == self.hmac_key
        if self.oidc_issuer is not None:
            if origin.issuer != self.oidc_issuer:
                return False
            return all(fnmatch.fnmatchcase(str(origin.claims.get(k, "")), v) for k, v in self.claims.items())
        if self.person_role is not None:
            if actor.kind not in (ActorKind.PERSON, ActorKind.KEY) or self.person_role not in actor.roles:
                return False
            return not self.person_groups or bool(set(self.person_groups) & actor.groups)
        return False

    def describe(self) -> str:
        if self.hmac_key is not None:
            return f"events signed with key {self.hmac_key}"
        if self.oidc_issuer is not None:
            wanted = ", ".join(f"{k}={v}" for k, v in self.claims.items())
            return f"CI tokens from {self.oidc_issuer}" + (f" with {wanted}" if wanted else "")
        groups = f" in group {' or '.join(self.person_groups)}" if self.person_groups else ""
        return f"people with the role {self.person_role}{groups}"


@dataclass(frozen=True)
class Artifacts:
    registries: tuple[str, ...] = ()  # "contoso.azurecr.io" or "contoso.azurecr.io/web"
    require_digest: bool = False
    package_hosts: tuple[str, ...] = ()  # "contoso.blob.core.windows.net", "*.blob.core.windows.net"


@dataclass(frozen=True)
class Floors:
    min_steps: int = 0
    min_bake_seconds: int = 0
    providers: tuple[ProviderKind, ...] = ()
    gates: tuple[str, ...] = ()


@dataclass(frozen=True)
class NamedGate:
    url: str
    secret_setting: str | None = None
    allow_networks: tuple[str, ...] = ()  # private ranges this gate may resolve to (CIDR)


@dataclass(frozen=True)
class Issuer:
    issuer: str
    audience: str


@dataclass(frozen=True)
class TargetRule:
    name: str
    subscription: str = "*"
    resource_group: str = "*"
    site: str = "*"
    sources: tuple[Source, ...] = ()
    artifacts: Artifacts = Artifacts()
    before_traffic: ApprovalRule | None = None
    before_promotion: ApprovalRule | None = None
    two_person: bool = True
    floors: Floors = Floors()
    forbidden_settings: tuple[str, ...] = ()
    allowed_settings: tuple[str, ...] = ()
    key_vault_settings: tuple[str, ...] = ()
    # Whose analysis acts: "enforce" (an event may not ask for advisory), "advisory" (every release
    # of these sites only records what it would have done) or "either" (the event chooses).
    analysis_mode: str = "enforce"
    # What a rollback quarantines: "site", "app" (every site this rule covers) or "off".
    quarantine: str = "site"
    # When releases may start and advance on these sites.
    schedule: Schedule = field(default_factory=Schedule)
    # Rollouts over several sites: what a failure does to the sites already done ("keep", or
    # "rollbackAll": run their previous release again), and whether paired regions may share a wave.
    rollout_on_failure: str = "keep"
    allow_paired_regions: bool = False

    def covers(self, spec: ReleaseSpec) -> bool:
        t = spec.target
        return (
            fnmatch.fnmatchcase(t.subscription_id.lower(), self.subscription.lower())
            and fnmatch.fnmatchcase(t.resource_group.lower(), self.resource_group.lower())
            and fnmatch.fnmatchcase(t.site.lower(), self.site.lower())
        )


@dataclass(frozen=True)
class Policy:
    rules: tuple[TargetRule, ...] = ()
    gates: Mapping[str, NamedGate] = field(default_factory=dict)
    issuers: Mapping[str, Issuer] = field(default_factory=dict)
    digest: str = ""

    def rule_for(self, spec: ReleaseSpec) -> TargetRule | None:
        return next((r for r in self.rules if r.covers(spec)), None)


@dataclass(frozen=True)
class Admitted:
    spec: ReleaseSpec
    policy: EffectivePolicy


def _matches_any(name: str, patterns: tuple[str, ...] | list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name.upper(), p.upper()) for p in patterns)


def _registry(ref: str) -> tuple[str, str]:
    """(registry host, repository) of an image reference, as Docker reads it."""
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first.lower(), rest
    return "docker.io", ref


def _artifact_errors(spec: ReleaseSpec, rules: Artifacts) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    artifact = spec.artifact
    if artifact.kind == "container":
        host, repository = _registry(artifact.ref)
        name = repository.split("@", 1)[0]
        if ":" in name.rsplit("/", 1)[-1]:
            name = name.rsplit(":", 1)[0]  # the tag
        image = f"{host}/{name}".lower()
        allowed = [r.lower().rstrip("/") for r in rules.registries]
        if not any(image == a or image.startswith(a + "/") or host == a for a in allowed):
            where = ", ".join(rules.registries) or "none"
            errors.append(("artifact.container", f"{host} is not a registry this site may release from ({where})"))
        if rules.require_digest and not DIGEST.search(artifact.ref):
            errors.append(("artifact.container", "must name the image by digest (…@sha256:<64 hex>) for this site"))
        return errors
    url = urlsplit(artifact.ref)
    if url.scheme != "https":
        errors.append(("artifact.package", "must be an https:// URL"))
    if url.username or url.password:
        errors.append(("artifact.package", "must not carry credentials (user:password@); use a managed identity"))
    if any(k.lower() in CREDENTIAL_QUERY_KEYS for k, _ in parse_qsl(url.query, keep_blank_values=True)):
        errors.append(
            ("artifact.package", "must not carry a credential in its query (a SAS token); use a managed identity")
        )
    host = (url.hostname or "").lower()
    if not any(fnmatch.fnmatchcase(host, h.lower()) for h in rules.package_hosts):
        where = ", ".join(rules.package_hosts) or "none"
        errors.append(("artifact.package", f"{host or 'the URL'} is not a host this site may release from ({where})"))
    return errors


def _setting_errors(spec: ReleaseSpec, rule: TargetRule) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    forbidden = (*DEFAULT_FORBIDDEN_SETTINGS, *rule.forbidden_settings)
    for name, value in spec.app_settings.items():
        where = f"appSettings.{name}"
        if name.upper() in RESERVED_SETTINGS:
            errors.append((where, "is reserved: the controller sets it on the slot"))
        elif _matches_any(name, forbidden) and not _matches_any(name, rule.allowed_settings):
            errors.append((where, f"may not be set by a release on this site (policy rule {rule.name})"))
        elif _matches_any(name, rule.key_vault_settings) and not KEY_VAULT_REFERENCE.match(value):
            errors.append((where, "must be a Key Vault reference (@Microsoft.KeyVault(SecretUri=…)) on this site"))
    return errors


def _floor_errors(spec: ReleaseSpec, floors: Floors) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    if spec.is_canary:
        steps = spec.strategy.steps
        if len(steps) < floors.min_steps:
            errors.append(("strategy.steps", f"must have at least {floors.min_steps} steps on this site"))
        for index, step in enumerate(steps):
            if step.bake_seconds < floors.min_bake_seconds:
                errors.append(
                    (f"strategy.steps[{index}].bake", f"must be at least {floors.min_bake_seconds}s on this site")
                )
    elif floors.min_steps > 0:
        errors.append(("strategy.type", f"must be a canary with at least {floors.min_steps} steps on this site"))
    kinds = {p.kind for p in spec.analysis.providers}
    for kind in floors.providers:
        if kind not in kinds:
            errors.append(("analysis.providers", f"must include the {kind} provider on this site"))
    named = {p.gate for p in spec.analysis.providers if p.kind is ProviderKind.WEBHOOK}
    for gate in floors.gates:
        if gate not in named:
            errors.append(("analysis.providers", f"must include the webhook gate {gate!r} on this site"))
    return errors


def _resolve_gates(spec: ReleaseSpec, policy: Policy) -> tuple[ReleaseSpec, list[tuple[str, str]]]:
    """Webhook gates are named by the event; their address and key come from the policy."""
    errors: list[tuple[str, str]] = []
    providers = []
    for index, provider in enumerate(spec.analysis.providers):
        if provider.kind is not ProviderKind.WEBHOOK:
            providers.append(provider)
            continue
        gate = policy.gates.get(provider.gate or "")
        if gate is None:
            known = ", ".join(sorted(policy.gates)) or "none"
            errors.append((f"analysis.providers[{index}].gate", f"is not a gate the policy names ({known})"))
            continue
        providers.append(
            replace(provider, url=gate.url, secret_setting=gate.secret_setting, allow_networks=gate.allow_networks)
        )
    resolved = replace(spec, analysis=replace(spec.analysis, providers=tuple(providers)))
    return resolved, errors


def admit(policy: Policy, spec: ReleaseSpec, origin: Origin) -> Admitted:
    """The spec as it will run under the policy, and the policy recorded with it. Raises
    PolicyRefusal naming every field the policy does not allow."""
    rule = policy.rule_for(spec)
    t = spec.target
    if rule is None:
        raise PolicyRefusal(
            [("target", f"no release policy rule covers {t.subscription_id}/{t.resource_group}/{t.site}")]
        )
    errors: list[tuple[str, str]] = []
    if not any(source.accepts(origin) for source in rule.sources):
        allowed = "; ".join(s.describe() for s in rule.sources) or "nobody"
        errors.append(
            ("(origin)", f"{origin.actor.label} may not release to {t.site} (policy rule {rule.name} allows {allowed})")
        )
    errors += _artifact_errors(spec, rule.artifacts)
    errors += _setting_errors(spec, rule)
    errors += _floor_errors(spec, rule.floors)
    if spec.analysis.advisory and rule.analysis_mode == "enforce":
        errors.append(
            ("analysis.mode", f"advisory analysis is not allowed on this site (policy rule {rule.name} enforces it)")
        )
    resolved, gate_errors = _resolve_gates(spec, policy)
    errors += gate_errors
    if errors:
        raise PolicyRefusal(errors)
    changes: list[str] = []
    before_traffic = rule.before_traffic
    before_promotion = rule.before_promotion
    if before_promotion is not None and resolved.promotion is not Promotion.MANUAL:
        resolved = replace(resolved, promotion=Promotion.MANUAL)
        changes.append(f"promotion made manual: rule {rule.name} requires an approval before the swap")
    if rule.analysis_mode == "advisory" and not resolved.analysis.advisory:
        resolved = replace(resolved, analysis=replace(resolved.analysis, mode="advisory"))
        changes.append(f"analysis made advisory: rule {rule.name} only records what it would do on these sites")
    canary = resolved.strategy.kind is StrategyKind.CANARY
    if before_traffic is not None and canary and not resolved.approve_before_traffic:
        resolved = replace(resolved, approve_before_traffic=True)
        changes.append(f"approval before traffic added: rule {rule.name} requires it")
    if before_traffic is not None and resolved.strategy.kind is StrategyKind.BLUE_GREEN and before_promotion is None:
        # A blue-green release's first user traffic is its swap.
        before_promotion = before_traffic
        resolved = replace(resolved, promotion=Promotion.MANUAL)
        changes.append(f"promotion made manual: rule {rule.name} requires an approval before any traffic")
    effective = EffectivePolicy(
        rule=rule.name,
        digest=policy.digest,
        before_traffic=before_traffic,
        before_promotion=before_promotion,
        two_person=rule.two_person,
        changes=tuple(changes),
        quarantine=rule.quarantine,
        schedule=rule.schedule,
    )
    return Admitted(resolved, effective)


def address_allowed(address: str, allow_networks: tuple[str, ...]) -> bool:
    """An outbound request may go to a public address, or to a private one its gate names."""
    ip = ipaddress.ip_address(address)
    if any(ip in ipaddress.ip_network(n, strict=False) for n in allow_networks):
        return True
    return not (
        ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_multicast or ip.is_reserved or ip.is_unspecified
    )
