"""System checks: say loudly when a deployment runs on the embedded development secrets."""

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
