"""HTTP API under /api: submit, list, read, audit, policy, overrides, health.

Every route but health needs a function key, and every route names the role it needs; the caller is
App Service authentication's signed-in principal (or, in key-only mode for local development, the
function key, which can never approve). Errors are application/problem+json. Nothing a client sends
— body, query or header — is logged.

The routes are declared here; what each does is in ``shared/triggers/http.py``, imported on the
first request, so that indexing the app (every cold start) loads only ``azure.functions``.
"""

from __future__ import annotations

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("submit_release")
@bp.route(route="releases", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def submit_release(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import http

    return http.submit_release(req)


@bp.function_name("list_releases")
@bp.route(route="releases", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def list_releases(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import http

    return http.list_releases(req)


@bp.function_name("get_release")
@bp.route(route="releases/{releaseId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_release(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import http

    return http.get_release(req)


@bp.function_name("get_release_audit")
@bp.route(route="releases/{releaseId}/audit", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_release_audit(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import http

    return http.get_release_audit(req)


@bp.function_name("get_release_evidence")
@bp.route(route="releases/{releaseId}/evidence", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_release_evidence(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import http

    return http.get_release_evidence(req)


@bp.function_name("override_release")
@bp.route(route="releases/{releaseId}/{action}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def override_release(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import http

    return http.override_release(req)


@bp.function_name("get_policy")
@bp.route(route="policy", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_policy(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import http

    return http.get_policy(req)


@bp.function_name("get_stats")
@bp.route(route="stats", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_stats(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import http

    return http.get_stats(req)


@bp.function_name("list_rejections")
@bp.route(route="rejections", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def list_rejections(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import http

    return http.list_rejections(req)


@bp.function_name("list_quarantine")
@bp.route(route="quarantine", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def list_quarantine(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import http

    return http.list_quarantine(req)


@bp.function_name("lift_quarantine")
@bp.route(route="sites/{siteKey}/quarantine/{version}/lift", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def lift_quarantine(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import http

    return http.lift_quarantine(req)


@bp.function_name("redeploy_site")
@bp.route(route="sites/{siteKey}/redeploy", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def redeploy_site(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import http

    return http.redeploy_site(req)


@bp.function_name("get_control")
@bp.route(route="control", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_control(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import http

    return http.get_control(req)


@bp.function_name("set_control")
@bp.route(route="control/{action}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def set_control(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import http

    return http.set_control(req)


@bp.function_name("submit_rollout")
@bp.route(route="rollouts", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def submit_rollout(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import http

    return http.submit_rollout(req)


@bp.function_name("list_rollouts")
@bp.route(route="rollouts", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def list_rollouts(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import http

    return http.list_rollouts(req)


@bp.function_name("get_rollout")
@bp.route(route="rollouts/{rolloutId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_rollout(req: func.HttpRequest) -> func.HttpResponse:
    from shared.triggers import http

    return http.get_rollout(req)


@bp.function_name("healthz")
@bp.route(route="healthz", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def healthz(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse('{"status": "ok"}', status_code=200, mimetype="application/json")
