"""The recorder: a plain JSON target that upserts by key and logs every write call (sandbox.recorder.views)."""

from __future__ import annotations

from sandbox.models import RecorderRecord
from sandbox.registry import Emulator


def reset() -> None:
    RecorderRecord.objects.all().delete()


DESCRIPTOR = Emulator(name="recorder", urls="sandbox.recorder.urls", reset=reset)
