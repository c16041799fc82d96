"""Start the emulator from a small config: in-process (tests) or as a process of its own.

    python -m devstack.appservice --config devstack/appservice/sites.sample.json

prints its ARM endpoint, CA file and host names as JSON, then serves until interrupted.
"""

from __future__ import annotations

import argparse
import json
import signal
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devstack.appservice.arm import ArmApi, start_arm
from devstack.appservice.certs import TlsFiles, make_tls_files
from devstack.appservice.state import Cloud, Fault, Site, Slot, Timings
from devstack.appservice.traffic import start_front_door, start_worker, warm_up


@dataclass
class SiteConfig:
    """One web app. ``kind`` and the stack say what it is: a Linux container (``app,linux,container``,
    ``linuxFxVersion=DOCKER|image``), a Linux code app (``app,linux``, e.g. ``NODE|20-lts``), a
    sidecar app (``SITECONTAINERS``), a Windows container (``app,container,windows``,
    ``windowsFxVersion=DOCKER|image``) or a Windows code app (``app``)."""

    subscription_id: str
    resource_group: str
    name: str
    slots: tuple[str, ...] = ("staging",)
    location: str = "West Europe"
    production_settings: dict[str, str] = field(default_factory=dict)
    linux_fx_version: str = ""
    kind: str = "app,linux,container"
    windows_fx_version: str | None = None
    sticky_settings: tuple[str, ...] = ()
    production_config: dict[str, Any] = field(default_factory=dict)


@dataclass
class EmulatorConfig:
    sites: list[SiteConfig]
    timings: Timings = field(default_factory=Timings)
    seed: int | None = None
    # The cloud's clock (epoch seconds); real time when None. Tests share theirs with the controller.
    clock: Callable[[], float] | None = None
    async_operation_header: bool = False

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> EmulatorConfig:
        sites = [
            SiteConfig(
                subscription_id=s["subscriptionId"],
                resource_group=s["resourceGroup"],
                name=s["name"],
                slots=tuple(s.get("slots", ["staging"])),
                location=s.get("location", "West Europe"),
                production_settings=dict(s.get("productionSettings", {})),
                linux_fx_version=s.get("linuxFxVersion", ""),
                kind=s.get("kind", "app,linux,container"),
                windows_fx_version=s.get("windowsFxVersion"),
                sticky_settings=tuple(s.get("stickySettings", ())),
                production_config=dict(s.get("productionConfig", {})),
            )
            for s in doc["sites"]
        ]
        defaults = Timings()
        timings = Timings(
            swap_seconds=float(doc.get("swapSeconds", defaults.swap_seconds)),
            startup_seconds=float(doc.get("startupSeconds", defaults.startup_seconds)),
            metrics_delay_seconds=float(doc.get("metricsDelaySeconds", defaults.metrics_delay_seconds)),
            warmup_timeout_seconds=float(doc.get("warmupTimeoutSeconds", defaults.warmup_timeout_seconds)),
        )
        return cls(sites=sites, timings=timings, seed=doc.get("seed"))


class AppServiceEmulator:
    def __init__(self, config: EmulatorConfig, workdir: Path | None = None):
        self.config = config
        self.cloud = Cloud(timings=config.timings, seed=config.seed, clock=config.clock)
        self.cloud.serve = lambda site, slot, path: warm_up(self.cloud, site, slot, path)
        self._workdir = workdir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._servers: list[ThreadingHTTPServer] = []
        self.tls: TlsFiles | None = None
        self.arm_url = ""

    def start(self) -> AppServiceEmulator:
        if self._workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="appservice-emulator-")
            self._workdir = Path(self._tmp.name)
        self.tls = make_tls_files(self._workdir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls.server_cert, self.tls.server_key)
        for sc in self.config.sites:
            stack: dict[str, Any] = {"linuxFxVersion": sc.linux_fx_version}
            if sc.windows_fx_version is not None:
                stack["windowsFxVersion"] = sc.windows_fx_version
            production = Slot(
                "production", settings=dict(sc.production_settings), config={**stack, **sc.production_config}
            )
            site = Site(
                sc.subscription_id,
                sc.resource_group,
                sc.name,
                sc.location,
                production,
                {},
                kind=sc.kind,
                sticky_settings=set(sc.sticky_settings),
            )
            for name in sc.slots:
                # A slot is created with the site's stack (cloned config); an image is release content,
                # so a container slot starts without one.
                linux = sc.linux_fx_version
                config = {"linuxFxVersion": "" if linux.upper().startswith("DOCKER|") else linux}
                if sc.windows_fx_version is not None:
                    config["windowsFxVersion"] = ""
                site.slots[name] = Slot(name, config=config)
            self.cloud.add_site(site)
            front = start_front_door(self.cloud, site, context)
            self._servers.append(front)
            site.front_door_host = f"127.0.0.1:{front.server_address[1]}"
            production.host = site.front_door_host
            for slot in site.slots.values():
                worker = start_worker(self.cloud, site, slot, context)
                self._servers.append(worker)
                slot.host = f"127.0.0.1:{worker.server_address[1]}"
        api = ArmApi(self.cloud, "", async_operation_header=self.config.async_operation_header)
        arm = start_arm(api, context)
        self._servers.append(arm)
        self.arm_url = f"https://127.0.0.1:{arm.server_address[1]}"
        api.base_url = self.arm_url  # for the Location and Azure-AsyncOperation headers
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> AppServiceEmulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- what tests and the demo use ---------------------------------------------------------

    @property
    def ca_file(self) -> str:
        assert self.tls is not None, "start the emulator first"
        return str(self.tls.ca_cert)

    def site(self, name: str) -> Site:
        return next(s for s in self.cloud.sites.values() if s.name.lower() == name.lower())

    def inject(
        self,
        path_contains: str,
        *,
        method: str | None = None,
        status: int | None = None,
        code: str = "InjectedFault",
        message: str = "injected by the emulator",
        delay_seconds: float = 0.0,
        times: int = 1,
        shape: str = "arm",
        retry_after: int | None = None,
    ) -> None:
        """Answer the next ``times`` matching ARM requests with ``status`` (after ``delay_seconds``),
        with an ARM (``shape="arm"``) or App Service (``"appservice"``) error body."""
        with self.cloud.lock:
            self.cloud.faults.append(
                Fault(method, path_contains, status, code, message, delay_seconds, times, shape, retry_after)
            )

    def fail_next_swap(
        self, code: str = "SwapFailed", message: str = "the swap failed during warm-up", status: int = 409
    ) -> None:
        with self.cloud.lock:
            self.cloud.fail_next_swap = (status, code, message)

    def describe(self) -> dict[str, Any]:
        return {
            "armEndpoint": self.arm_url,
            "caFile": self.ca_file,
            "sites": [
                {
                    "subscriptionId": s.subscription_id,
                    "resourceGroup": s.resource_group,
                    "name": s.name,
                    "production": s.front_door_host,
                    "slots": {name: slot.host for name, slot in s.slots.items()},
                }
                for s in self.cloud.sites.values()
            ],
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.appservice", description=__doc__)
    parser.add_argument("--config", required=True, help="JSON: {sites: [{subscriptionId, resourceGroup, name, slots}]}")
    parser.add_argument("--workdir", help="where to write the CA and server certificate (default: a temp dir)")
    args = parser.parse_args(argv)
    config = EmulatorConfig.from_dict(json.loads(Path(args.config).read_text()))
    emulator = AppServiceEmulator(config, Path(args.workdir) if args.workdir else None).start()
    print(json.dumps(emulator.describe(), indent=2), flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    emulator.stop()
    sys.exit(0)
