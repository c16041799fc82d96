"""What the HTTP API's routes do (the routes themselves are declared in functions/http_api.py).

Every route but health needs a function key, and every route names the role it needs; the caller is
App Service authentication's signed-in principal (or, in key-only mode for local development, the
function key, which can never approve). Errors are application/problem+json. Nothing a client sends
— body, query or header — is logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import azure.functions as func

from shared import bootstrap
from shared.api import (
    Problem,
    audit_view,
    bad_request,
    check_release_id,
    check_site_key,
    measurements_view,
    parse_action,
    parse_list_query,
    parse_reason,
    parse_redeploy,
    parse_rejections_query,
    quarantine_view,
    rejection_view,
    release_view,
    require_json,
    rollout_view,
    stats_view,
    summary_view,
)
from shared.authority.policy_file import PolicyError
from shared.authority.principals import BadPrincipal, Forbidden, NotAuthenticated, caller, require
from shared.authority.proofs import EventProof
from shared.domain.lifecycle import OverrideRefused
from shared.domain.model import Actor, OverrideKind
from shared.domain.schema import MAX_EVENT_BYTES
from shared.ports import ReleaseIdConflict, ReleaseNotFound, RolloutNotFound, StoreUnavailable
from shared.service import NothingToRedeploy, NotQuarantined, TooManyConflicts
from shared.settings import SettingsError

log = logging.getLogger("release_controller.http")

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
MAX_HEADER = 16 * 1024
REFUSAL_STATUS = {"invalid": 400, "unproven": 401, "forbidden": 403}


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False), status_code=status, mimetype=JSON, headers=headers or {}
    )


def _path(req: func.HttpRequest) -> str | None:
    return "/" + req.url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0] if req.url else None


def _problem(problem: Problem, req: func.HttpRequest, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(problem.body(_path(req)), ensure_ascii=False),
        status_code=problem.status,
        mimetype=PROBLEM_JSON,
        headers=headers or {},
    )


def _caller(req: func.HttpRequest) -> Actor:
    """Who is calling. Raises Problem (401, or 400 for a malformed principal)."""
    settings = bootstrap.access_settings(bootstrap.container().settings)
    try:
        return caller(req.headers, settings)
    except NotAuthenticated as exc:
        raise Problem(401, "not-authenticated", "Sign-in required", str(exc)) from None
    except BadPrincipal as exc:
        errors = [{"field": "X-MS-CLIENT-PRINCIPAL", "message": str(exc)}]
        raise Problem(400, "bad-principal", "The principal is not valid", str(exc), errors) from None


def _who(req: func.HttpRequest, action: str) -> Actor:
    """The caller, if it holds the role ``action`` needs. Raises Problem (401/403)."""
    return _allowed(_caller(req), action)


def _allowed(actor: Actor, action: str) -> Actor:
    try:
        require(actor, action)
    except Forbidden as exc:
        log.warning("refused %s to %s: needs role %s", exc.action, exc.actor.id, exc.role.value)
        raise Problem(
            403,
            "forbidden",
            "A role is missing",
            str(exc),
            [{"field": "role", "message": f"needs {exc.role.value}"}],
            {"missingRole": exc.role.value},
        ) from None
    return actor


def _handle(req: func.HttpRequest, route: str, work: Callable[[], func.HttpResponse]) -> func.HttpResponse:
    """Map domain and storage outcomes to HTTP; nothing unexpected is swallowed silently, and no
    log line carries what the client sent (a query string holds the function key)."""
    try:
        return work()
    except Problem as problem:
        return _problem(problem, req)
    except ReleaseNotFound as exc:
        return _problem(Problem(404, "release-not-found", "No such release", str(exc)), req)
    except RolloutNotFound as exc:
        return _problem(Problem(404, "rollout-not-found", "No such rollout", str(exc)), req)
    except OverrideRefused as exc:
        return _problem(Problem(409, "not-allowed-now", "Not allowed in the release's current state", exc.reason), req)
    except ReleaseIdConflict as exc:
        return _problem(
            Problem(
                409,
                "release-id-conflict",
                "The release id is taken",
                str(exc),
                [{"field": "releaseId", "message": "is already used by a different release"}],
            ),
            req,
        )
    except NothingToRedeploy as exc:
        return _problem(Problem(409, "nothing-to-redeploy", "Nothing to redeploy", str(exc)), req)
    except NotQuarantined as exc:
        return _problem(Problem(404, "not-quarantined", "Not quarantined", str(exc)), req)
    except TooManyConflicts as exc:
        return _problem(Problem(503, "busy", "The release is changing; try again", str(exc)), req, {"Retry-After": "1"})
    except (SettingsError, PolicyError) as exc:
        # The app's own configuration, not the request: say so (what to fix is in the log, for the
        # platform team) and let clients retry once it is deployed again.
        log.error("the controller is misconfigured: %s", exc)
        return _problem(
            Problem(503, "misconfigured", "The controller is misconfigured", "the reason is in the function's logs"),
            req,
            {"Retry-After": "60"},
        )
    except StoreUnavailable as exc:
        log.error("storage unavailable: %s", exc)
        return _problem(
            Problem(503, "storage-unavailable", "Storage is unavailable", "try again shortly"),
            req,
            {"Retry-After": "5"},
        )
    except Exception:
        log.exception("unhandled error serving %s %s", req.method, route)
        return _problem(Problem(500, "internal-error", "Internal error", "the error is in the function's logs"), req)


def _header(req: func.HttpRequest, name: str) -> str | None:
    value = req.headers.get(name)
    if value is not None and (len(value) > MAX_HEADER or not value.isascii()):
        raise bad_request(f"the {name} header is not valid", [(name, "must be ASCII and at most 16 KiB")])
    return value or None


def _event(req: func.HttpRequest) -> tuple[bytes, EventProof]:
    """A submitted event's body (JSON, within the size limit) and the proof its headers carry."""
    require_json(req.headers)
    body = req.get_body() or b""
    if len(body) > MAX_EVENT_BYTES:
        raise Problem(413, "too-large", "The event is too large", f"{len(body)} bytes; the limit is {MAX_EVENT_BYTES}")
    proof = EventProof(
        signature=_header(req, "x-release-signature-256"),
        key_id=_header(req, "x-release-key-id"),
        identity_token=_header(req, "x-release-identity-token"),
    )
    return body, proof


def submit_release(req: func.HttpRequest) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        actor = _who(req, "submit")
        body, proof = _event(req)
        key = _header(req, "idempotency-key")
        result = bootstrap.get_service().ingest(
            body, message_id=key, source="http", proof=proof, caller=actor, keep_rejections=False
        )
        if result.outcome == "rejected":
            status = REFUSAL_STATUS[result.refusal or "invalid"]
            slug = {400: "invalid-release-event", 401: "unproven-origin", 403: "not-allowed-by-policy"}[status]
            title = {400: "The release event is not valid", 401: "The event's origin is not proven"}.get(
                status, "The release policy does not allow this release"
            )
            errors = [{"field": f or "(body)", "message": m} for f, m in result.errors]
            raise Problem(status, slug, title, result.reason, errors)
        assert result.release is not None
        view = _view(result.release)
        if result.outcome == "duplicate":
            return _json(200, view, {"Location": view["links"]["self"]})
        return _json(201, view, {"Location": view["links"]["self"]})

    return _handle(req, "POST /api/releases", work)


def _view(release: Any) -> dict[str, Any]:
    return release_view(release, bootstrap.get_service().site_for_view(release))


def list_releases(req: func.HttpRequest) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        _who(req, "list")
        query = parse_list_query(dict(req.params))
        try:
            page = bootstrap.get_service().list(
                site_key=query.site_key, site=query.site, phase=query.phase, limit=query.limit, cursor=query.cursor
            )
        except ValueError:
            raise bad_request("the cursor is not valid", [("cursor", "is not a cursor this API handed out")]) from None
        return _json(200, {"items": [summary_view(s) for s in page.items], "cursor": page.cursor})

    return _handle(req, "GET /api/releases", work)


def get_release(req: func.HttpRequest) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        _who(req, "get")
        release_id = check_release_id(req.route_params.get("releaseId", ""))
        return _json(200, _view(bootstrap.get_service().get(release_id)))

    return _handle(req, "GET /api/releases/{id}", work)


def get_release_audit(req: func.HttpRequest) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        _who(req, "audit")
        release_id = check_release_id(req.route_params.get("releaseId", ""))
        entries = bootstrap.get_service().audit(release_id)
        return _json(200, {"releaseId": release_id, "entries": [audit_view(e) for e in entries]})

    return _handle(req, "GET /api/releases/{id}/audit", work)


def get_release_evidence(req: func.HttpRequest) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        _who(req, "evidence")
        release_id = check_release_id(req.route_params.get("releaseId", ""))
        release, kept = bootstrap.get_service().measurements(release_id)
        return _json(200, measurements_view(release, kept))

    return _handle(req, "GET /api/releases/{id}/evidence", work)


def override_release(req: func.HttpRequest) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        actor = _caller(req)
        release_id = check_release_id(req.route_params.get("releaseId", ""))
        action = parse_action(req.route_params.get("action", ""))
        _allowed(actor, action.value)
        require_json(req.headers)
        reason = parse_reason(req.get_body() or b"")
        release = bootstrap.get_service().override(release_id, action, actor=actor, reason=reason)
        view = _view(release)
        if action is OverrideKind.RETRY:
            return _json(201, view, {"Location": view["links"]["self"]})
        return _json(202, view)

    return _handle(req, "POST /api/releases/{id}/{action}", work)


def get_stats(req: func.HttpRequest) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        _who(req, "stats")
        return _json(200, stats_view(bootstrap.get_service().ledger()))

    return _handle(req, "GET /api/stats", work)


def get_policy(req: func.HttpRequest) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        _who(req, "policy")
        container = bootstrap.container()
        authority = container.service.authority
        return _json(
            200,
            {
                "path": str(bootstrap.policy_path(container.settings).name),
                "digest": authority.policy.digest,
                "policy": container.parts.get("policy_document"),
            },
        )

    return _handle(req, "GET /api/policy", work)


def list_rejections(req: func.HttpRequest) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        _who(req, "rejections")
        service = bootstrap.get_service()
        query = parse_rejections_query(dict(req.params), service.clock.now().strftime("%Y-%m-%d"))
        rows = service.rejections(query.day, query.limit)
        return _json(200, {"day": query.day, "items": [rejection_view(r) for r in rows]})

    return _handle(req, "GET /api/rejections", work)


def list_quarantine(req: func.HttpRequest) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        _who(req, "quarantine")
        entries = bootstrap.get_service().quarantined()
        return _json(200, {"items": [quarantine_view(site_key, q) for site_key, q in entries]})

    return _handle(req, "GET /api/quarantine", work)


def lift_quarantine(req: func.HttpRequest) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        actor = _who(req, "lift-quarantine")
        site_key = check_site_key(req.route_params.get("siteKey", ""))
        version = req.route_params.get("version", "")
        if not 0 < len(version) <= 128:
            raise bad_request("no such version", [("version", "is at most 128 characters")])
        require_json(req.headers)
        reason = parse_reason(req.get_body() or b"")
        entry = bootstrap.get_service().lift_quarantine(site_key, version, actor=actor, reason=reason)
        return _json(200, {"lifted": quarantine_view(site_key, entry), "by": actor.label, "reason": reason})

    return _handle(req, "POST /api/sites/{siteKey}/quarantine/{version}/lift", work)


def redeploy_site(req: func.HttpRequest) -> func.HttpResponse:
    """Disaster recovery: the site's last good release, run on another site."""

    def work() -> func.HttpResponse:
        actor = _who(req, "redeploy")
        site_key = check_site_key(req.route_params.get("siteKey", ""))
        require_json(req.headers)
        to, reason = parse_redeploy(req.get_body() or b"")
        result = bootstrap.get_service().redeploy(site_key, to, actor=actor, reason=reason)
        if result.outcome == "rejected":
            errors = [{"field": f or "(request)", "message": m} for f, m in result.errors]
            raise Problem(
                403, "not-allowed-by-policy", "The release policy does not allow this redeploy", result.reason, errors
            )
        assert result.release is not None
        view = _view(result.release)
        return _json(201 if result.outcome == "created" else 200, view, {"Location": view["links"]["self"]})

    return _handle(req, "POST /api/sites/{siteKey}/redeploy", work)


def _stop_view(switch: Any) -> dict[str, Any]:
    if switch is None:
        return {"stopped": False, "reason": None, "by": None, "at": None}
    return {"stopped": switch.on, "reason": switch.reason, "by": switch.by, "at": switch.at.isoformat()}


def get_control(req: func.HttpRequest) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        _who(req, "control")
        return _json(200, _stop_view(bootstrap.get_service().store.load_stop().value))

    return _handle(req, "GET /api/control", work)


def set_control(req: func.HttpRequest) -> func.HttpResponse:
    """The global stop switch: ``stop`` holds every release before its next start, step or swap
    (rollbacks still run); ``start`` lets them go on."""

    def work() -> func.HttpResponse:
        action = req.route_params.get("action", "")
        if action not in ("stop", "start"):
            raise Problem(404, "unknown-action", "No such action", "use stop or start")
        actor = _who(req, "stop")
        require_json(req.headers)
        reason = parse_reason(req.get_body() or b"")
        switch = bootstrap.get_service().set_stop(action == "stop", actor=actor, reason=reason)
        return _json(200, _stop_view(switch))

    return _handle(req, "POST /api/control/{action}", work)


def submit_rollout(req: func.HttpRequest) -> func.HttpResponse:
    """A release over several sites, in waves (the rollout event): the same proofs and policy as a
    release event, for every site."""

    def work() -> func.HttpResponse:
        actor = _who(req, "submit")
        body, proof = _event(req)
        service = bootstrap.get_service()
        result = service.ingest_rollout(
            body,
            message_id=_header(req, "idempotency-key"),
            source="http",
            proof=proof,
            caller=actor,
            keep_rejections=False,
        )
        if result.outcome == "rejected":
            status = {**REFUSAL_STATUS, "conflict": 409}[result.refusal or "invalid"]
            slug = {
                400: "invalid-rollout-event",
                401: "unproven-origin",
                403: "not-allowed-by-policy",
                409: "rollout-id-conflict",
            }[status]
            errors = [{"field": f or "(body)", "message": m} for f, m in result.errors]
            raise Problem(status, slug, "The rollout was refused", result.reason, errors)
        assert result.rollout is not None
        view = rollout_view(result.rollout, service.rollout_children(result.rollout))
        return _json(201 if result.outcome == "created" else 200, view, {"Location": view["links"]["self"]})

    return _handle(req, "POST /api/rollouts", work)


def list_rollouts(req: func.HttpRequest) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        _who(req, "rollouts")
        items = [
            {
                "rolloutId": r.id,
                "version": r.spec.version,
                "phase": r.phase,
                "wave": {"index": r.wave + 1, "of": len(r.spec.waves)},
                "sites": {run.site: run.state for run in r.runs},
                "createdAt": r.created_at.isoformat(),
                "links": {"self": f"/api/rollouts/{r.id}"},
            }
            for r in bootstrap.get_service().rollouts()
        ]
        return _json(200, {"items": items})

    return _handle(req, "GET /api/rollouts", work)


def get_rollout(req: func.HttpRequest) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        _who(req, "rollouts")
        rollout_id = check_release_id(req.route_params.get("rolloutId", ""))
        service = bootstrap.get_service()
        r = service.get_rollout(rollout_id)
        return _json(200, rollout_view(r, service.rollout_children(r)))

    return _handle(req, "GET /api/rollouts/{id}", work)
