"""System checks: say loudly when a deployment runs on the development secrets or with the sandbox on."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Warning, register


@register(deploy=True)
def dev_secrets_check(app_configs: Any, **kwargs: Any) -> list[Warning]:
    if not settings.USING_DEV_SECRETS:
        return []
    return [
        Warning(
            "SECRET_KEY or FIELD_ENCRYPTION_SALT has its embedded development value.",
            hint="Set both (or SECRET_KEY_FILE / FIELD_ENCRYPTION_SALT_FILE); System secrets are encrypted with them.",
            id="icbridge.W001",
        )
    ]


@register(deploy=True)
def sandbox_mounted_check(app_configs: Any, **kwargs: Any) -> list[Warning]:
    if not settings.ICBRIDGE_SANDBOX or settings.USING_DEV_SECRETS:
        return []  # on the dev secrets W001 already says this is no production hub
    return [
        Warning(
            "ICBRIDGE_SANDBOX is on: /sandbox/ serves emulators that anyone may write to.",
            hint="Set ICBRIDGE_SANDBOX=false on a production hub.",
            id="icbridge.W002",
        )
    ]
