"""The local demo: the whole controller on this machine, no Azure needed.

Starts Azurite (Table Storage and the work queue), the App Service emulator (site contoso-web running 1.0.0, slot
staging), the Service Bus stand-in and the local Functions host serving function_app.py (receiving
release events from the stand-in on sessions, as in Azure), with real visitors hitting the
production host name. Then it ships two builds with releasectl, as a pipeline would:

1. 1.1.0, published on Service Bus: deployed to staging, validated, 20% -> 50% canary, swapped in;
2. 1.2.0, submitted over the HTTP API: a bad build (30% errors), caught at its first step and
   rolled back.

It shows each release's progress (phase, step, weight, the share of real visitors each version
served), checks both outcomes through releasectl's exit codes, and exits non-zero unless the good
build was promoted and the bad one rolled back. Ctrl-C and SIGTERM stop everything it started and
remove every file it made.

    python -m devstack.demo                # the tour, then stop (about a minute)
    python -m devstack.demo --serve        # the stack only, until Ctrl-C; prints how to use it
    python -m devstack.demo --serve --tour # the tour, then keep serving
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from devstack.appservice import AppServiceEmulator, EmulatorConfig, SiteConfig, Timings
from devstack.authority import KEY_ID, new_signing_key, principal_header, write_policy
from devstack.azurite import start_azurite
from devstack.credentials import EmulatorCredential
from devstack.funchost import LocalFunctionHost
from devstack.servicebus import ServiceBusEmulator, release_events
from devstack.traffic import Visitors, share

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
RESOURCE_GROUP = "rg-demo"
SITE = "contoso-web"
FUNCTION_KEY = "local-demo-function-key"
TARGET = {"subscriptionId": SUBSCRIPTION, "resourceGroup": RESOURCE_GROUP, "site": SITE, "slot": "staging"}
# Who releasectl speaks for: the pipeline's identity (it submits and follows), and a person on call.
PIPELINE = ("Contoso CI", ("submitter", "reader"))
ON_CALL = ("Dana", ("reader", "operator", "approver"))


def release_event(release_id: str, version: str, error_rate: str) -> dict[str, Any]:
    return {
        "releaseId": release_id,
        "target": TARGET,
        "version": version,
        "artifact": {"container": f"contoso.azurecr.io/web:{version}"},
        "appSettings": {"EMULATOR_ERROR_RATE": error_rate, "EMULATOR_LATENCY_MS": "0"},
        "strategy": {
            "type": "canary",
            "steps": [{"weight": 20, "bake": "6s"}, {"weight": 50, "bake": "6s"}],
            "guard": "4s",
        },
        "validation": {
            "checks": [{"path": "/healthz", "expectStatus": 200, "bodyContains": "ok"}],
            "consecutiveSuccesses": 2,
        },
        "analysis": {
            "providers": [{"type": "http", "requestsPerTick": 10}],
            "maxErrorRate": 0.05,
            "minRequests": 20,
            "progressDeadline": "2m",
            "interval": "2s",
        },
        "metadata": {"commit": "demo", "requestedBy": "demo@contoso.com"},
    }


class Stopped(BaseException):
    """SIGTERM: stop as on Ctrl-C (a BaseException, so no library's ``except Exception`` eats it)."""


@contextlib.contextmanager
def stack(data_dir: Path) -> Iterator[dict[str, Any]]:
    """Everything the controller needs, started on 127.0.0.1, and stopped (in reverse) on the way out."""
    with contextlib.ExitStack() as started:
        azurite = start_azurite(location=data_dir)
        started.callback(azurite.stop)
        queues = start_azurite(location=data_dir / "queues", service="queue")
        started.callback(queues.stop)
        emulator = AppServiceEmulator(
            EmulatorConfig(
                [
                    SiteConfig(
                        SUBSCRIPTION,
                        RESOURCE_GROUP,
                        SITE,
                        production_settings={"RELEASE_ID": "web-1.0.0", "RELEASE_VERSION": "1.0.0"},
                        linux_fx_version="DOCKER|contoso.azurecr.io/web:1.0.0",
                    )
                ],
                # Minutes-long swaps and restarts (the emulator's default) would make a slow demo.
                timings=Timings(
                    swap_seconds=1.0, startup_seconds=0.5, metrics_delay_seconds=0, warmup_timeout_seconds=10
                ),
            )
        ).start()
        started.callback(emulator.stop)
        bus = ServiceBusEmulator(release_events()).start()
        started.callback(bus.stop)
        # What a platform team ships: a release policy; what CI holds: a signing key (made for this run).
        signing_key = new_signing_key()
        policy = write_policy(data_dir, subscription=SUBSCRIPTION, resource_group=RESOURCE_GROUP, sites=SITE)
        settings = {
            "RELEASE_POLICY_PATH": str(policy),
            f"RELEASE_SIGNING_KEY_{KEY_ID}": signing_key,
            # Requests come through App Service authentication: releasectl sends the principal it would set.
            "WEBSITE_AUTH_ENABLED": "True",
            "RELEASE_STORE_CONNECTION": azurite.connection_string,
            "ServiceBusConnection": bus.connection_string,
            "RELEASE_EVENTS_TOPIC": "release-events",
            "RELEASE_EVENTS_SUBSCRIPTION": "controller",
            "RECONCILE_SCHEDULE": "*/1 * * * * *",
            # The work queue: each save schedules the release's next reconcile on it; the queue
            # trigger runs them (the timer only re-sends late ones).
            "WorkQueue": queues.connection_string,
            "WORK_QUEUE_NAME": "release-work",
            "DISPATCH_GRACE_SECONDS": "5",
            "SLOT_PLATFORM": "appService",
            "ARM_ENDPOINT": emulator.arm_url,
            "ARM_CA_BUNDLE": emulator.ca_file,
            "PROBE_CA_BUNDLE": emulator.ca_file,
            "ARM_RETRY_TOTAL": "0",
        }
        os.environ.update(settings)
        from shared import bootstrap
        from shared.settings import Settings

        bootstrap.use(bootstrap.build(Settings.from_env(), credential=EmulatorCredential()))
        started.callback(bootstrap.use, None)
        import function_app

        host = LocalFunctionHost(
            function_app.app, settings, function_key=FUNCTION_KEY, browser_principal=principal_header(*ON_CALL)
        ).start()
        started.callback(host.stop)
        site = emulator.site(SITE)
        visitors = Visitors(f"https://{site.front_door_host}/", emulator.ca_file, rate_per_second=80).start()
        started.callback(visitors.stop)
        watching = threading.Event()

        def keep_storage_up() -> None:
            # Releases live on disk: if Azurite stops (or is restarted by hand), start it again on
            # the same port and data, and the controller carries on where it was.
            while not watching.wait(1.0):
                if azurite.ensure_running():
                    print(f"  (Azurite had stopped; restarted on port {azurite.port} with its data)")
                if queues.ensure_running():
                    print(f"  (Azurite's queue service had stopped; restarted on port {queues.port} with its data)")

        watchdog = threading.Thread(target=keep_storage_up, name="azurite-watchdog", daemon=True)
        watchdog.start()
        started.callback(watchdog.join, 35)  # the last thing started, the first stopped
        started.callback(watching.set)
        yield {
            "azurite": azurite,
            "queues": queues,
            "emulator": emulator,
            "bus": bus,
            "host": host,
            "site": site,
            "visitors": visitors,
            "signing_key": signing_key,
            "data_dir": data_dir,
        }


def releasectl_env(s: dict[str, Any], who: tuple[str, tuple[str, ...]]) -> dict[str, str]:
    """What a pipeline (or a person's shell) sets for releasectl against this stack."""
    return {
        "RELEASECTL_API": s["host"].url,
        "RELEASECTL_FUNCTION_KEY": FUNCTION_KEY,
        "RELEASECTL_LOCAL_PRINCIPAL": principal_header(*who),
        "RELEASECTL_SERVICEBUS_CONNECTION": s["bus"].connection_string,
        "RELEASECTL_SIGNING_KEY": s["signing_key"],
    }


def releasectl(s: dict[str, Any], *argv: str) -> int:
    """Run releasectl as the pipeline (its console script's main, in this process)."""
    from releasectl.cli import main

    print(f"   $ releasectl {shlex.join(argv)}")
    os.environ.update(releasectl_env(s, PIPELINE))
    sys.stdout.flush()
    code = main(list(argv))
    if code == 130:  # releasectl's answer to Ctrl-C: the demo stops too
        raise KeyboardInterrupt
    return code


def meaning(code: int) -> str:
    from releasectl.outcomes import Exit

    return Exit(code).name.lower().replace("_", " ") if code in set(Exit) else "unexpected"


def progress(s: dict[str, Any], release_id: str, started: float, timeout: float = 180.0) -> bool:
    """Watch a release to its end, as `releasectl watch` shows it, plus what real visitors got.
    False when it has not ended within ``timeout`` seconds."""
    from releasectl.client import Api
    from releasectl.outcomes import is_final
    from releasectl.render import headline, live_view, new_share

    api = Api(s["host"].url)
    visitors: Visitors = s["visitors"]
    live = None
    if sys.stdout.isatty():
        from rich.console import Group
        from rich.live import Live
        from rich.text import Text

        live = Live(refresh_per_second=4, transient=False)
        live.start()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            time.sleep(1)
            view = api.release(release_id, missing_ok=True)
            seen = f"visitors: {share(visitors.take())}"
            if view is None:
                print(f"  t+{time.monotonic() - started:4.0f}s  {release_id}: not yet received")
                continue
            if live is not None:
                live.update(Group(live_view(view, api.audit(release_id)), Text(seen)))
            else:
                state = f"{headline(view).split(': ', 1)[1]}, new {new_share(view)}%"
                print(f"  t+{time.monotonic() - started:4.0f}s  {release_id:10s} {state:34s} {seen}")
            if is_final(view):
                return True
        print(f"  {release_id} did not end within {timeout:.0f} s")
        return False
    finally:
        if live is not None:
            live.stop()


def tour(s: dict[str, Any]) -> bool:
    """Ship the good build over Service Bus and the bad one over HTTP; True when each ended as it should."""
    from releasectl.outcomes import Exit

    data_dir: Path = s["data_dir"]
    started = time.monotonic()
    good, bad = data_dir / "web-1.1.0.json", data_dir / "web-1.2.0.json"
    good.write_text(json.dumps(release_event("web-1.1.0", "1.1.0", "0"), indent=2))
    bad.write_text(json.dumps(release_event("web-1.2.0", "1.2.0", "0.3"), indent=2))

    def ship(path: Path, release_id: str, *via: str) -> int:
        """Publish with releasectl, show the progress, and answer releasectl's exit code for the
        outcome (-1 when the publish failed or the release never ended)."""
        sent = releasectl(s, "publish", "-f", str(path), "--key-id", KEY_ID, *via)
        code = (
            releasectl(s, "wait", release_id, "--timeout", "30s")
            if sent == Exit.SUCCEEDED and progress(s, release_id, started)
            else -1
        )
        print(f"   -> releasectl exit code {code} ({meaning(code)})")
        return code

    print("\n1) CI publishes 1.1.0 on Service Bus: deploy, validate, 20% -> 50%, swap")
    first = ship(good, "web-1.1.0")
    print("\n2) CI submits 1.2.0 over the HTTP API: a bad build (30% of its requests fail)")
    second = ship(bad, "web-1.2.0", "--via", "http")

    print("\nThe audit trail of web-1.2.0:")
    releasectl(s, "audit", "web-1.2.0")
    time.sleep(1.5)
    print(f"\nProduction now: {share(s['visitors'].take())}")
    staging = requests.get(f"https://{s['site'].slots['staging'].host}/", verify=s["emulator"].ca_file, timeout=5)
    print(f"Staging slot runs: {staging.json()['version']}")
    ok = (first, second) == (Exit.SUCCEEDED, Exit.ROLLED_BACK)
    print(
        "\nDemo checked: 1.1.0 promoted (exit 0), 1.2.0 rolled back (exit 1)."
        if ok
        else f"\nDemo FAILED: releasectl answered {first} and {second} (expected 0 and 1)."
    )
    return ok


def describe(s: dict[str, Any]) -> None:
    """Every endpoint, the emulated site, and commands to paste into another shell."""
    host, bus, azurite, emulator, site = s["host"], s["bus"], s["azurite"], s["emulator"], s["site"]
    queues = s["queues"]
    queue_url = queues.connection_string.split("QueueEndpoint=")[-1].rstrip(";")
    data_dir: Path = s["data_dir"]
    sample = data_dir / "web-1.3.0.json"
    sample.write_text(json.dumps(release_event("web-1.3.0", "1.3.0", "0"), indent=2))
    print(
        f"""
The local stack (everything on 127.0.0.1; Ctrl-C or SIGTERM stops it):
  Functions host   {host.url}/api   (function key: {FUNCTION_KEY})
  Dashboard        {host.url}/api/dashboard   (in a browser: signed in as {ON_CALL[0]}, as App Service would)
  Service Bus      {bus.connection_string.split(";")[0]}   topic release-events, subscription controller (sessions)
  Azurite          {azurite.connection_string.split("TableEndpoint=")[-1].rstrip(";")}   (pid {azurite.process.pid})
  work queue       {queue_url}/release-work   (pid {queues.process.pid})
  App Service ARM  {emulator.arm_url}   (CA certificate: {emulator.ca_file})
  Site             {SITE} in subscription {SUBSCRIPTION}, resource group {RESOURCE_GROUP}
                   production https://{site.front_door_host}   staging https://{site.slots["staging"].host}
  Files            {data_dir}

In another shell, from the project's folder (these keys and the signed-in person exist for this run only):
  . .venv/bin/activate"""
    )
    for name, value in releasectl_env(s, ON_CALL).items():
        print(f"  export {name}={shlex.quote(value)}")
    print(
        f"""  releasectl publish -f {shlex.quote(str(sample))} --key-id {KEY_ID}
  releasectl watch web-1.3.0
  releasectl list
  releasectl publish -f {shlex.quote(str(sample))} --release-id web-1.4.0 --version 1.4.0 \\
      --image contoso.azurecr.io/web:1.4.0 --set EMULATOR_ERROR_RATE=0.3 --key-id {KEY_ID}
  releasectl pause web-1.4.0 --reason "holding it while we look"
  releasectl status web-1.4.0
  releasectl resume web-1.4.0 --reason "go on"
  releasectl watch web-1.4.0
  releasectl audit web-1.4.0
  releasectl rejections
(1.3.0 is a good build; 1.4.0 fails 30% of its requests and the analysis rolls it back. Dana may
pause, resume, promote, roll back and approve: `releasectl rollback ID --reason …`; publishing is
proven by the signing key.)
""",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="start the stack and keep it running until Ctrl-C")
    parser.add_argument("--tour", action="store_true", help="with --serve: ship the two demo builds first")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep Azurite's data and the demo's files in this folder, across runs (default: a temporary "
        "folder, removed at the end)",
    )
    args = parser.parse_args(argv)

    def stop(signum: int, frame: Any) -> None:
        raise Stopped

    signal.signal(signal.SIGTERM, stop)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="release-controller-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    ok = args.serve and not args.tour  # a tour must finish, and pass, to succeed
    interrupted = 0
    try:
        with stack(data_dir) as s:
            up = f"Functions host {s['host'].url}/api and its Azure stand-ins are up"
            print(f"{up} (Azurite pid {s['azurite'].process.pid}); data in {data_dir}", flush=True)
            if not args.serve or args.tour:
                ok = tour(s)
            if args.serve:
                describe(s)
                while True:
                    time.sleep(1)
    except KeyboardInterrupt:
        interrupted = 130
    except Stopped:
        interrupted = 143
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    if interrupted:
        print("\nStopped: everything the demo started is stopped, and its files removed.", flush=True)
        # Serving ends this way by design; a tour cut short did not show what it should have.
        return 0 if args.serve and ok else interrupted
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
