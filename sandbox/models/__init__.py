"""Sandbox state, one module per emulator; shared pieces in core and store."""

from sandbox.models.core import FaultSettings, RecorderRecord, RecorderWrite
from sandbox.models.store import EmulatorRecord, EmulatorSubscription

__all__ = ["EmulatorRecord", "EmulatorSubscription", "FaultSettings", "RecorderRecord", "RecorderWrite"]
