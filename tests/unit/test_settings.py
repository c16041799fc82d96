"""Settings as App Service hands them over."""

from __future__ import annotations

from shared.settings import SIGNING_KEY_PREFIX, Settings


def test_an_unresolved_key_vault_reference_is_never_a_key():
    # App Service passes a reference it cannot resolve on as its own text, which anyone can read in
    # the template: as a signing key it would let anyone sign events.
    reference = "@Microsoft.KeyVault(VaultName=kv-relctl;SecretName=release-signing-key-ci2026)"
    env = {
        "RELEASE_STORE_ENDPOINT": "https://x.table.core.windows.net",
        f"{SIGNING_KEY_PREFIX}ci2026": reference,
        f"{SIGNING_KEY_PREFIX}good": "a-resolved-key",
        "WEBHOOK_SECRET_SCAN": " @microsoft.keyvault(SecretUri=https://kv.vault.azure.net/secrets/scan)",
    }
    settings = Settings.from_env(env)
    assert dict(settings.signing_keys) == {"good": "a-resolved-key"}
    assert not settings.webhook_secrets
    assert settings.unresolved_references == (f"{SIGNING_KEY_PREFIX}ci2026", "WEBHOOK_SECRET_SCAN")
