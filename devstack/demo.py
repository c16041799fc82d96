"""The local demo: the whole controller on this machine, no Azure needed.

Starts Azurite (Table Storage), the App Service emulator (site contoso-web running 1.0.0, slot
staging) and the local Functions host serving function_app.py, with real visitors hitting the
production host name. Then it ships two builds:

1. 1.1.0 through Service Bus: deployed to staging, validated, 20% -> 50% canary, swapped in;
2. 1.2.0 over the HTTP API, a bad build (30% errors): caught at its first step and rolled back.

Every second it prints the phase and the share of real visitors each version served. It ends by
itself and stops everything it started.   python -m devstack.demo  [--serve]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from devstack.appservice import AppServiceEmulator, EmulatorConfig, SiteConfig, Timings
from devstack.authority import KEY_ID, new_signing_key, principal_header, write_policy
from devstack.azurite import start_azurite
from devstack.credentials import EmulatorCredential
from devstack.funchost import LocalFunctionHost
from devstack.traffic import Visitors, share
from shared.authority.proofs import sign

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
KEY = "local-demo-function-key"
TARGET = {"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg-demo", "site": "contoso-web", "slot": "staging"}


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
        },
        "metadata": {"commit": "demo", "requestedBy": "demo@contoso.com"},
    }


def follow(api: requests.Session, base: str, release_id: str, visitors: Visitors, started: float) -> dict[str, Any]:
    last = ""
    while True:
        time.sleep(1)
        doc = api.get(f"{base}/api/releases/{release_id}").json()
        step = f" step {doc['step']['index']}/{doc['step']['of']}" if doc.get("step") else ""
        state = f"{doc['phase']}{step} weight {doc['weight']:g}%"
        print(
            f"  t+{time.monotonic() - started:4.0f}s  {release_id:10s} {state:32s} visitors: {share(visitors.take())}"
        )
        if doc["phase"] in ("succeeded", "rolledBack", "failed", "cancelled"):
            return doc
        if state == last and doc["phase"] == "awaitingApproval":
            return doc
        last = state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.demo", description=__doc__)
    parser.add_argument("--serve", action="store_true", help="keep everything running after the tour (Ctrl-C stops)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep Azurite's data in this folder, across runs (default: a temporary folder, removed at the end)",
    )
    args = parser.parse_args(argv)

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="release-controller-demo-"))
    azurite = start_azurite(location=data_dir)
    stopping = threading.Event()

    def keep_storage_up() -> None:
        # Releases live on disk: if Azurite stops (or is restarted by hand), start it again on the
        # same port and data, and the controller carries on where it was.
        while not stopping.wait(1.0):
            if azurite.ensure_running():
                print(f"  (Azurite had stopped; restarted on port {azurite.port} with its data from {data_dir})")

    threading.Thread(target=keep_storage_up, name="azurite-watchdog", daemon=True).start()
    emulator = AppServiceEmulator(
        EmulatorConfig(
            [
                SiteConfig(
                    SUBSCRIPTION,
                    "rg-demo",
                    "contoso-web",
                    production_settings={"RELEASE_ID": "web-1.0.0", "RELEASE_VERSION": "1.0.0"},
                    linux_fx_version="DOCKER|contoso.azurecr.io/web:1.0.0",
                )
            ],
            # Minutes-long swaps and restarts (the emulator's default) would make a slow demo.
            timings=Timings(swap_seconds=1.0, startup_seconds=0.5, metrics_delay_seconds=0, warmup_timeout_seconds=10),
        )
    ).start()
    # What a platform team ships: a release policy; what CI holds: a signing key (made for this run).
    signing_key = new_signing_key()
    policy = write_policy(data_dir, subscription=SUBSCRIPTION, resource_group="rg-demo", sites="contoso-web")
    settings = {
        "RELEASE_POLICY_PATH": str(policy),
        f"RELEASE_SIGNING_KEY_{KEY_ID}": signing_key,
        # Requests come through App Service authentication: the header below is what it would set.
        "WEBSITE_AUTH_ENABLED": "True",
        "RELEASE_STORE_CONNECTION": azurite.connection_string,
        "RELEASE_EVENTS_TOPIC": "release-events",
        "RELEASE_EVENTS_SUBSCRIPTION": "controller",
        "RECONCILE_SCHEDULE": "*/1 * * * * *",
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
    import function_app

    host = LocalFunctionHost(function_app.app, settings, function_key=KEY).start()
    site = emulator.site("contoso-web")
    visitors = Visitors(f"https://{site.front_door_host}/", emulator.ca_file, rate_per_second=80).start()
    api = requests.Session()
    api.headers["x-functions-key"] = KEY
    api.headers["x-ms-client-principal"] = principal_header("Dana", ("reader", "operator", "approver"))
    api.trust_env = False
    started = time.monotonic()
    try:
        print(f"Functions host   {host.url}/api   (x-functions-key: {KEY})")
        print(f"Azurite          port {azurite.port}, pid {azurite.process.pid}, data in {data_dir}")
        print(
            f"App Service ARM  {emulator.arm_url}   production https://{site.front_door_host}   staging https://{site.slots['staging'].host}"
        )
        print("\n1) version 1.1.0 arrives on Service Bus: deploy, validate, 20% -> 50%, swap")
        good = json.dumps(release_event("web-1.1.0", "1.1.0", "0")).encode()
        status, _, _ = host.deliver(
            good,
            message_id="web-1.1.0",
            application_properties={"releaseSignature": sign(good, signing_key), "releaseKeyId": KEY_ID},
        )
        assert status == 202
        first = follow(api, host.url, "web-1.1.0", visitors, started)
        print(f"   -> {first['phase']}")

        print("\n2) version 1.2.0 arrives over HTTP: a bad build (30% of its requests fail)")
        bad = json.dumps(release_event("web-1.2.0", "1.2.0", "0.3")).encode()
        response = api.post(
            f"{host.url}/api/releases",
            data=bad,
            headers={
                "content-type": "application/json",
                # the pipeline's own identity (role submitter), and the event signed with CI's key
                "x-ms-client-principal": principal_header("Contoso CI", ("submitter",)),
                "x-release-signature-256": sign(bad, signing_key),
                "x-release-key-id": KEY_ID,
            },
        )
        print(f"   POST /api/releases -> {response.status_code} {response.headers.get('Location')}")
        second = follow(api, host.url, "web-1.2.0", visitors, started)
        print(f"   -> {second['phase']}: {second['reason']}")

        audit = api.get(f"{host.url}/api/releases/web-1.2.0/audit").json()["entries"]
        print("\nThe audit trail of web-1.2.0 (GET /api/releases/web-1.2.0/audit):")
        for entry in audit:
            when, who, phase = entry["at"][11:19], entry["actor"], entry["phaseTo"]
            print(f"  #{entry['seq']:<3} {when} {who:12s} {phase:12s} {entry['weight']:>4g}%  {entry['message']}")
        time.sleep(1.5)
        print(f"\nProduction now: {share(visitors.take())}")
        staging_url = f"https://{site.slots['staging'].host}/"
        staging = requests.get(staging_url, verify=emulator.ca_file, timeout=5).json()
        print(f"Staging slot runs: {staging['version']}")
        if args.serve:
            who = api.headers["x-ms-client-principal"]
            print(
                "\nServing until Ctrl-C. Try (as Dana, signed in through App Service authentication):\n"
                f"  curl -H 'x-functions-key: {KEY}' -H 'x-ms-client-principal: {who}' {host.url}/api/releases"
            )
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        stopping.set()
        visitors.stop()
        host.stop()
        emulator.stop()
        azurite.stop()
        bootstrap.use(None)
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
