"""HTTP API under /api: submit, list, read, audit, overrides, health.

Every route that changes state needs a function key (and, when App Service authentication is on,
records the signed-in principal as the actor). Errors are application/problem+json.
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
    actor_from_headers,
    audit_view,
    bad_request,
    check_release_id,
    parse_action,
    parse_list_query,
    parse_reason,
    release_view,
    summary_view,
)
from shared.domain.lifecycle import OverrideRefused
from shared.domain.model import OverrideKind
from shared.domain.schema import MAX_EVENT_BYTES
from shared.ports import ReleaseIdConflict, ReleaseNotFound, StoreUnavailable
from shared.service import TooManyConflicts

bp = func.Blueprint()
log = logging.getLogger("release_controller.http")

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False), status_code=status, mimetype=JSON, headers=headers or {}
    )


def _problem(problem: Problem, req: func.HttpRequest, headers: dict[str, str] | None = None) -> func.HttpResponse:
    path = "/" + req.url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0] if req.url else None
    return func.HttpResponse(
        json.dumps(problem.body(path), ensure_ascii=False),
        status_code=problem.status,
        mimetype=PROBLEM_JSON,
        headers=headers or {},
    )


def _actor(req: func.HttpRequest) -> str:
    return actor_from_headers(req.headers, trust_principal=bootstrap.container().settings.trust_client_principal)


def _handle(req: func.HttpRequest, work: Callable[[], func.HttpResponse]) -> func.HttpResponse:
    """Map domain and storage outcomes to HTTP; nothing unexpected is swallowed silently."""
    try:
        return work()
    except Problem as problem:
        return _problem(problem, req)
    except ReleaseNotFound as exc:
        return _problem(Problem(404, "release-not-found", "No such release", str(exc)), req)
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
    except TooManyConflicts as exc:
        return _problem(Problem(503, "busy", "The release is changing; try again", str(exc)), req, {"Retry-After": "1"})
    except StoreUnavailable as exc:
        log.error("storage unavailable: %s", exc)
        return _problem(
            Problem(503, "storage-unavailable", "Storage is unavailable", "try again shortly"),
            req,
            {"Retry-After": "5"},
        )
    except Exception:
        log.exception("unhandled error serving %s %s", req.method, req.url)
        return _problem(Problem(500, "internal-error", "Internal error", "the error is in the function's logs"), req)


@bp.function_name("submit_release")
@bp.route(route="releases", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def submit_release(req: func.HttpRequest) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        body = req.get_body() or b""
        if len(body) > MAX_EVENT_BYTES:
            raise Problem(
                413, "too-large", "The event is too large", f"{len(body)} bytes; the limit is {MAX_EVENT_BYTES}"
            )
        actor = _actor(req)
        key = req.headers.get("idempotency-key")
        result = bootstrap.get_service().ingest(body, message_id=key, source="http", actor=actor, keep_rejections=False)
        if result.outcome == "rejected":
            raise bad_request("the release event is not valid", result.errors, slug="invalid-release-event")
        assert result.release is not None
        view = release_view(result.release)
        if result.outcome == "duplicate":
            return _json(200, view, {"Location": view["links"]["self"]})
        return _json(201, view, {"Location": view["links"]["self"]})

    return _handle(req, work)


@bp.function_name("list_releases")
@bp.route(route="releases", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def list_releases(req: func.HttpRequest) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        query = parse_list_query(dict(req.params))
        try:
            page = bootstrap.get_service().list(
                site_key=query.site_key, site=query.site, phase=query.phase, limit=query.limit, cursor=query.cursor
            )
        except ValueError as exc:
            raise bad_request(str(exc), [("cursor", "is not a cursor this API handed out")]) from None
        return _json(200, {"items": [summary_view(s) for s in page.items], "cursor": page.cursor})

    return _handle(req, work)


@bp.function_name("get_release")
@bp.route(route="releases/{releaseId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_release(req: func.HttpRequest) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        release_id = check_release_id(req.route_params.get("releaseId", ""))
        return _json(200, release_view(bootstrap.get_service().get(release_id)))

    return _handle(req, work)


@bp.function_name("get_release_audit")
@bp.route(route="releases/{releaseId}/audit", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_release_audit(req: func.HttpRequest) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        release_id = check_release_id(req.route_params.get("releaseId", ""))
        entries = bootstrap.get_service().audit(release_id)
        return _json(200, {"releaseId": release_id, "entries": [audit_view(e) for e in entries]})

    return _handle(req, work)


@bp.function_name("override_release")
@bp.route(route="releases/{releaseId}/{action}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def override_release(req: func.HttpRequest) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        release_id = check_release_id(req.route_params.get("releaseId", ""))
        action = parse_action(req.route_params.get("action", ""))
        reason = parse_reason(req.get_body() or b"")
        actor = _actor(req)
        release = bootstrap.get_service().override(release_id, action, actor=actor, reason=reason)
        view = release_view(release)
        if action is OverrideKind.RETRY:
            return _json(201, view, {"Location": view["links"]["self"]})
        return _json(202, view)

    return _handle(req, work)


@bp.function_name("healthz")
@bp.route(route="healthz", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def healthz(req: func.HttpRequest) -> func.HttpResponse:
    return _json(200, {"status": "ok"})
