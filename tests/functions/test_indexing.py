"""The app as the Functions host indexes it: names, triggers, routes, connections, settings."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from shared.settings import BINDING_SETTINGS, Settings

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]


def bindings(fn) -> list[dict]:
    return [json.loads(b) for b in fn.get_raw_bindings()]


def test_every_function_is_registered_with_its_trigger(indexed):
    triggers = {name: bindings(fn)[0]["type"] for name, fn in indexed.items()}
    assert triggers == {
        "release_events": "serviceBusTrigger",
        "reconcile_timer": "timerTrigger",
        "reconcile_worker": "queueTrigger",
        "submit_release": "httpTrigger",
        "list_releases": "httpTrigger",
        "get_release": "httpTrigger",
        "get_release_audit": "httpTrigger",
        "get_release_evidence": "httpTrigger",
        "override_release": "httpTrigger",
        "get_policy": "httpTrigger",
        "get_stats": "httpTrigger",
        "list_rejections": "httpTrigger",
        "healthz": "httpTrigger",
        "list_quarantine": "httpTrigger",
        "lift_quarantine": "httpTrigger",
        "redeploy_site": "httpTrigger",
        "get_control": "httpTrigger",
        "set_control": "httpTrigger",
        "submit_rollout": "httpTrigger",
        "list_rollouts": "httpTrigger",
        "get_rollout": "httpTrigger",
        "dashboard": "httpTrigger",
        "dashboard_release": "httpTrigger",
        "dashboard_action": "httpTrigger",
        "dashboard_rollout": "httpTrigger",
    }


def test_http_routes_methods_and_auth_levels(indexed):
    routes = {}
    for name, fn in indexed.items():
        trigger = bindings(fn)[0]
        if trigger["type"] == "httpTrigger":
            routes[name] = (trigger["route"], tuple(trigger["methods"]), trigger["authLevel"])
    assert routes == {
        "submit_release": ("releases", ("POST",), "FUNCTION"),
        "list_releases": ("releases", ("GET",), "FUNCTION"),
        "get_release": ("releases/{releaseId}", ("GET",), "FUNCTION"),
        "get_release_audit": ("releases/{releaseId}/audit", ("GET",), "FUNCTION"),
        "get_release_evidence": ("releases/{releaseId}/evidence", ("GET",), "FUNCTION"),
        "override_release": ("releases/{releaseId}/{action}", ("POST",), "FUNCTION"),
        "get_policy": ("policy", ("GET",), "FUNCTION"),
        "get_stats": ("stats", ("GET",), "FUNCTION"),
        "list_rejections": ("rejections", ("GET",), "FUNCTION"),
        "healthz": ("healthz", ("GET",), "ANONYMOUS"),
        "list_quarantine": ("quarantine", ("GET",), "FUNCTION"),
        "lift_quarantine": ("sites/{siteKey}/quarantine/{version}/lift", ("POST",), "FUNCTION"),
        "redeploy_site": ("sites/{siteKey}/redeploy", ("POST",), "FUNCTION"),
        "get_control": ("control", ("GET",), "FUNCTION"),
        "set_control": ("control/{action}", ("POST",), "FUNCTION"),
        "submit_rollout": ("rollouts", ("POST",), "FUNCTION"),
        "list_rollouts": ("rollouts", ("GET",), "FUNCTION"),
        "get_rollout": ("rollouts/{rolloutId}", ("GET",), "FUNCTION"),
        # A browser cannot send a function key: the dashboard requires App Service's signed-in person.
        "dashboard": ("dashboard", ("GET",), "ANONYMOUS"),
        "dashboard_release": ("dashboard/releases/{releaseId}", ("GET",), "ANONYMOUS"),
        "dashboard_action": ("dashboard/releases/{releaseId}/{action}", ("POST",), "ANONYMOUS"),
        "dashboard_rollout": ("dashboard/rollouts/{rolloutId}", ("GET",), "ANONYMOUS"),
    }


def test_the_service_bus_trigger_reads_its_topic_from_settings_with_sessions(indexed):
    (trigger,) = bindings(indexed["release_events"])
    assert trigger["connection"] == "ServiceBusConnection"
    assert trigger["topicName"] == "%RELEASE_EVENTS_TOPIC%"
    assert trigger["subscriptionName"] == "%RELEASE_EVENTS_SUBSCRIPTION%"
    assert trigger["isSessionsEnabled"] is True


def test_the_timer_schedule_comes_from_a_setting(indexed):
    (trigger,) = bindings(indexed["reconcile_timer"])
    assert trigger["schedule"] == "%RECONCILE_SCHEDULE%"
    assert trigger["runOnStartup"] is False


def test_the_worker_reads_its_queue_and_connection_from_settings(indexed):
    (trigger,) = bindings(indexed["reconcile_worker"])
    assert trigger["queueName"] == "%WORK_QUEUE_NAME%"
    assert trigger["connection"] == "WorkQueue"


def test_python_parameter_names_match_the_binding_names(indexed):
    """The real worker checks this; get_functions() does not. ``context`` is the worker's own
    parameter (the invocation), bound to no binding, and typed as azure.functions.Context."""
    import inspect

    for fn in indexed.values():
        signature = inspect.signature(fn.get_user_function())
        params = set(signature.parameters) - {"context"}
        names = {b["name"] for b in bindings(fn) if b["direction"] == "IN"}
        assert names == params, fn.get_function_name()
        if "context" in signature.parameters:
            assert signature.parameters["context"].annotation in ("func.Context", "azure.functions.Context")


def test_every_setting_a_binding_names_is_in_the_sample_settings(indexed):
    referenced = set()
    for fn in indexed.values():
        for b in bindings(fn):
            for value in b.values():
                if isinstance(value, str) and value.startswith("%") and value.endswith("%"):
                    referenced.add(value.strip("%"))
            if "connection" in b:
                referenced.add(b["connection"])
    assert referenced == {
        "RELEASE_EVENTS_TOPIC",
        "RELEASE_EVENTS_SUBSCRIPTION",
        "RECONCILE_SCHEDULE",
        "ServiceBusConnection",
        "WORK_QUEUE_NAME",
        "WorkQueue",
    }
    assert set(BINDING_SETTINGS) <= referenced
    for name in referenced:
        assert name in SAMPLE or any(k.startswith(name + "__") for k in SAMPLE), name


class Recording(Mapping):
    def __init__(self, values):
        self.values = values
        self.read = set()

    def __getitem__(self, key):
        self.read.add(key)
        return self.values[key]

    def get(self, key, default=None):
        self.read.add(key)
        return self.values.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self):
        return len(self.values)


def test_every_setting_the_app_reads_is_in_the_sample_settings():
    env = Recording(SAMPLE)
    Settings.from_env(env)
    missing = env.read - set(SAMPLE)
    assert not missing, f"document these in local.settings.sample.json: {missing}"


def test_importing_the_app_does_not_import_heavy_sdks_or_do_io():
    code = (
        "import sys, socket\n"
        "socket.socket.connect = lambda *a, **k: (_ for _ in ()).throw(AssertionError('I/O at import'))\n"
        "import function_app\n"
        "lazy = ('azure.mgmt.web', 'azure.identity', 'azure.servicebus', 'azure.data.tables',\n"
        "        'requests', 'yaml', 'jwt')\n"
        "heavy = [m for m in lazy if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "# Indexing needs the trigger declarations only: the controller itself loads on first use.\n"
        "ours = sorted(m for m in sys.modules if m == 'shared' or m.startswith('shared.'))\n"
        "assert not ours, ours\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
