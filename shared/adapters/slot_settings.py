"""The app settings a release puts on a slot: exactly its own, and nothing an earlier release left.

App Service's settings PUT replaces every setting, and a swap carries the slot's non-sticky
settings into production. So a deploy computes the whole set: the keys no release set (put there
by hand or by the platform) are kept; the keys the previous release set are dropped; this
release's keys are added; and a stamp says which release runs there and which keys it owns.
Used by the Azure adapter and by the in-memory App Service model alike.
"""

from __future__ import annotations

from shared.domain.model import Artifact, Warmup

RELEASE_ID = "RELEASE_ID"
RELEASE_VERSION = "RELEASE_VERSION"
RELEASE_OWNED = "RELEASE_OWNED_SETTINGS"
STAMPS = (RELEASE_ID, RELEASE_VERSION, RELEASE_OWNED)
RUN_FROM_PACKAGE = "WEBSITE_RUN_FROM_PACKAGE"
WARMUP_PATH = "WEBSITE_SWAP_WARMUP_PING_PATH"
WARMUP_STATUSES = "WEBSITE_SWAP_WARMUP_PING_STATUSES"


def owned_keys(settings: dict[str, str]) -> set[str]:
    """The keys the release stamped on these settings says it set."""
    return {k for k in (settings.get(RELEASE_OWNED) or "").split(",") if k}


def release_settings(
    current: dict[str, str],
    *,
    release_id: str,
    version: str,
    artifact: Artifact,
    app_settings: dict[str, str],
    warmup: Warmup | None = None,
) -> dict[str, str]:
    """The complete settings of a slot that runs this release, from what the slot has now."""
    previous = owned_keys(current)
    kept = {k: v for k, v in current.items() if k not in previous and k not in STAMPS}
    owned = dict(app_settings)
    if artifact.kind == "package":
        owned[RUN_FROM_PACKAGE] = artifact.ref
    else:
        kept.pop(RUN_FROM_PACKAGE, None)  # a container never runs from a package
    if warmup is not None and WARMUP_PATH not in kept and WARMUP_STATUSES not in kept:
        # The site's own warm-up settings win; otherwise the swap warms the release's first check up.
        owned[WARMUP_PATH] = warmup.path
        owned[WARMUP_STATUSES] = ",".join(str(s) for s in warmup.statuses)
    return {
        **kept,
        **owned,
        RELEASE_ID: release_id,
        RELEASE_VERSION: version,
        RELEASE_OWNED: ",".join(sorted(owned)),
    }


def keys_that_must_move(artifact: Artifact, app_settings: dict[str, str]) -> set[str]:
    """Settings that must move with a swap, so none of them may be a slot (sticky) setting."""
    keys = {*STAMPS, *app_settings}
    if artifact.kind == "package":
        keys.add(RUN_FROM_PACKAGE)
    return keys
