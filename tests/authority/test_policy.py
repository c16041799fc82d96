"""The release policy: who may release what where, and the least safety every release gets."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.authority.policy_file import PolicyError, parse_policy
from shared.domain.model import Actor, ActorKind, ProviderKind, Role
from shared.domain.policy import (
    Artifacts,
    Floors,
    NamedGate,
    Origin,
    Policy,
    PolicyRefusal,
    Source,
    TargetRule,
    address_allowed,
    admit,
)
from tests.builders import SUBSCRIPTION, event, spec

CI = Origin(Actor("hmac:ci1", "signing key ci1", ActorKind.CI), key_id="ci1")
MAIN = Origin(
    Actor("oidc:github:repo:contoso/web:ref:refs/heads/main", "contoso/web", ActorKind.CI),
    issuer="github",
    claims={"repository": "contoso/web", "ref": "refs/heads/main"},
)
RULE = TargetRule(
    "web",
    subscription=SUBSCRIPTION,
    resource_group="rg-web",
    site="contoso-web",
    sources=(
        Source(hmac_key="ci1"),
        Source(oidc_issuer="github", claims={"repository": "contoso/web", "ref": "refs/heads/main"}),
    ),
    artifacts=Artifacts(registries=("contoso.azurecr.io/web",), package_hosts=("*.blob.core.windows.net",)),
)


def policy(**rule) -> Policy:
    return Policy(
        rules=(replace(RULE, **rule),),
        gates={"scan": NamedGate("https://gate.contoso.com/x", "WEBHOOK_SECRET_SCAN")},
        digest="d",
    )


def refused(p: Policy, doc, origin=CI) -> dict[str, str]:
    with pytest.raises(PolicyRefusal) as caught:
        admit(p, spec(doc), origin)
    return dict(caught.value.errors)


def test_a_site_no_rule_covers_cannot_be_released():
    other = event(target={"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg-x", "site": "elsewhere"})
    assert "no release policy rule covers" in refused(policy(), other)["target"]


def test_an_unlisted_registry_is_refused():
    errors = refused(policy(), event(artifact={"container": "docker.io/attacker/backdoor:latest"}))
    assert "docker.io is not a registry this site may release from" in errors["artifact.container"]


def test_a_registry_prefix_is_a_repository_prefix_not_any_string():
    assert refused(policy(), event(artifact={"container": "contoso.azurecr.io/webhook-evil:1"}))
    assert admit(policy(), spec(event(artifact={"container": "contoso.azurecr.io/web/api:1"})), CI)


def test_digests_can_be_required():
    errors = refused(policy(artifacts=replace(RULE.artifacts, require_digest=True)), event())
    assert "by digest" in errors["artifact.container"]
    pinned = event(artifact={"container": "contoso.azurecr.io/web@sha256:" + "a" * 64})
    assert admit(policy(artifacts=replace(RULE.artifacts, require_digest=True)), spec(pinned), CI)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://evil.example/p.zip", "not a host this site may release from"),
        ("https://u:p@contoso.blob.core.windows.net/p.zip", "must not carry credentials"),
        ("https://contoso.blob.core.windows.net/p.zip?sv=2024&sig=abc", "SAS token"),
    ],
)
def test_package_urls_come_from_allowed_hosts_without_credentials(url, says):
    assert says in refused(policy(), event(artifact={"package": url}))["artifact.package"]


def test_only_the_listed_sources_may_release_and_claims_must_match():
    assert admit(policy(), spec(event()), MAIN)
    branch = replace(MAIN, claims={"repository": "contoso/web", "ref": "refs/heads/feature"})
    assert "may not release to contoso-web" in refused(policy(), event(), branch)["(origin)"]
    fork = replace(MAIN, claims={"repository": "mallory/web", "ref": "refs/heads/main"})
    assert refused(policy(), event(), fork)
    stranger = Origin(Actor("hmac:other", "signing key other", ActorKind.CI), key_id="other")
    assert refused(policy(), event(), stranger)


def test_a_person_releases_only_with_the_role_and_group_a_source_names():
    rule = policy(sources=(Source(person_role=Role.SUBMITTER, person_groups=("release-team",)),))
    member = Origin(Actor("aad:t/1", "Sam", roles=frozenset({Role.SUBMITTER}), groups=frozenset({"release-team"})))
    outsider = Origin(Actor("aad:t/2", "Mal", roles=frozenset({Role.SUBMITTER})))
    assert admit(rule, spec(event()), member)
    assert refused(rule, event(), outsider)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("DOCKER_REGISTRY_SERVER_PASSWORD", "may not be set"),
        ("NODE_OPTIONS", "may not be set"),
        ("APPLICATIONINSIGHTS_CONNECTION_STRING", "may not be set"),
    ],
)
def test_platform_settings_may_not_be_set_by_a_release(name, says):
    assert says in refused(policy(), event(appSettings={name: "x"}))[f"appSettings.{name}"]


def test_secrets_must_be_key_vault_references_where_the_policy_says_so():
    strict = policy(key_vault_settings=("*_PASSWORD",))
    assert (
        "Key Vault reference"
        in refused(strict, event(appSettings={"DB_PASSWORD": "hunter2"}))["appSettings.DB_PASSWORD"]
    )
    reference = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/db/1)"
    assert admit(strict, spec(event(appSettings={"DB_PASSWORD": reference})), CI)


def test_floors_may_be_strengthened_never_weakened():
    floors = policy(
        floors=Floors(min_steps=2, min_bake_seconds=300, providers=(ProviderKind.AZURE_MONITOR,), gates=("scan",))
    )
    one_step = event(strategy={"type": "canary", "steps": [{"weight": 50, "bake": "1m"}]})
    errors = refused(floors, one_step)
    assert "at least 2 steps" in errors["strategy.steps"]
    assert "at least 300s" in errors["strategy.steps[0].bake"]
    assert "azureMonitor" in errors["analysis.providers"] or "scan" in errors["analysis.providers"]
    strong = event(
        strategy={"type": "canary", "steps": [{"weight": 5, "bake": "10m"}, {"weight": 50, "bake": "10m"}]},
        analysis={"providers": [{"type": "azureMonitor"}, {"type": "webhook", "gate": "scan"}]},
    )
    admitted = admit(floors, spec(strong), CI)
    webhook = admitted.spec.analysis.providers[1]
    assert webhook.url == "https://gate.contoso.com/x" and webhook.secret_setting == "WEBHOOK_SECRET_SCAN"


def test_an_event_cannot_name_a_gate_the_policy_does_not_have():
    doc = event(analysis={"providers": [{"type": "webhook", "gate": "metadata"}]})
    assert "not a gate the policy names" in refused(policy(), doc)["analysis.providers[0].gate"]


def test_the_policy_decides_approvals_whatever_the_event_says():
    from shared.domain.model import ApprovalRule, Promotion

    admitted = admit(policy(before_promotion=ApprovalRule(Role.APPROVER, "release-managers")), spec(event()), CI)
    assert admitted.spec.promotion is Promotion.MANUAL
    assert admitted.policy.before_promotion.group == "release-managers" and admitted.policy.two_person
    assert "promotion made manual" in admitted.policy.changes[0]


@pytest.mark.parametrize(
    ("address", "networks", "allowed"),
    [
        ("20.1.2.3", (), True),
        ("127.0.0.1", (), False),
        ("169.254.169.254", (), False),
        ("10.1.2.3", (), False),
        ("10.1.2.3", ("10.0.0.0/8",), True),
        ("::1", (), False),
        ("fd00::1", (), False),
    ],
)
def test_outbound_addresses_are_public_unless_the_gate_names_the_range(address, networks, allowed):
    assert address_allowed(address, networks) is allowed


POLICY_YAML = """\
version: 1
issuers:
  github: {issuer: "https://token.actions.githubusercontent.com", audience: "api://release-controller"}
gates:
  scan: {url: "https://gate.contoso.com/x", secretSetting: WEBHOOK_SECRET_SCAN, allowNetworks: ["10.0.0.0/8"]}
targets:
  - name: web
    match: {subscription: "SUBSCRIPTION", resourceGroup: rg-web, site: contoso-web}
    sources:
      - oidc: github
        claims: {repository: contoso/web, ref: refs/heads/main}
    artifacts: {registries: [contoso.azurecr.io/web], requireDigest: false}
    approvals: {beforePromotion: {role: approver}, twoPerson: true}
    floors: {minSteps: 1, minBake: 2m, gates: [scan]}
    settings: {keyVault: ["*_PASSWORD"]}
""".replace("SUBSCRIPTION", SUBSCRIPTION)


def test_the_policy_file_reads_into_rules():
    parsed = parse_policy(POLICY_YAML)
    (rule,) = parsed.rules
    assert rule.floors.min_bake_seconds == 120 and rule.floors.gates == ("scan",)
    assert parsed.gates["scan"].allow_networks == ("10.0.0.0/8",)
    assert parsed.issuers["github"].audience == "api://release-controller"
    assert parsed.digest and parse_policy(POLICY_YAML).digest == parsed.digest


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (("minSteps: 1", "minSteps: two"), "targets[0].floors.minSteps (line 14): must be an integer"),
        (("oidc: github", "oidc: gitlab"), "targets[0].sources[0].oidc (line 10): 'gitlab' is not an issuer"),
        (("gates: [scan]", "gates: [nope]"), "targets[0].floors.gates[0]"),
        (("role: approver", "role: boss"), "targets[0].approvals.beforePromotion.role (line 13): must be one of"),
        (("version: 1", "version: 2"), "version (line 1): must be 1"),
        (("    sources:", "    sauces:"), "is not a known field"),
    ],
)
def test_a_bad_policy_names_the_field_and_its_line(change, says):
    with pytest.raises(PolicyError) as caught:
        parse_policy(POLICY_YAML.replace(*change))
    assert any(says in e for e in caught.value.errors), caught.value.errors


def test_a_policy_that_is_not_yaml_says_where():
    with pytest.raises(PolicyError, match="not valid YAML at line 3"):
        parse_policy("version: 1\ntargets: [\n")


def test_the_policy_shipped_with_the_app_is_valid_and_allows_nothing():
    from pathlib import Path

    shipped = parse_policy((Path(__file__).resolve().parents[2] / "release-policy.yaml").read_text())
    assert shipped.rules == ()
