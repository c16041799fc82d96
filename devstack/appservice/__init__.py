"""A local App Service emulator: the ARM REST subset the controller uses, over TLS, with a real
HTTP app per slot and a front door that splits production traffic by the ramp-up rule."""

from devstack.appservice.server import AppServiceEmulator, EmulatorConfig, SiteConfig
from devstack.appservice.state import Timings

__all__ = ["AppServiceEmulator", "EmulatorConfig", "SiteConfig", "Timings"]
