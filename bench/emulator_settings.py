"""Settings of a server that serves only the sandbox emulators (bench_e2e: the target apart from the hub)."""

from icbridge.settings import *  # noqa: F403

ROOT_URLCONF = "emulator_urls"
ICBRIDGE_SANDBOX = True
