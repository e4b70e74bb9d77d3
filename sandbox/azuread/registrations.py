"""Sandbox app registrations: EmulatorRecord rows (entity "app", key "<tenant>/<client id>").

A row holds a SHA-256 of the secret, never the secret itself, and counts the tokens issued to the app.
"""

from __future__ import annotations

import hashlib
import uuid

from sandbox.models import EmulatorRecord

EMULATOR = "azuread"
DEFAULT_TENANT = "88888888-8888-8888-8888-888888888888"
TOKEN_LIFETIME_SECONDS = 3599


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def register_app(
    *,
    client_id: str,
    client_secret: str,
    tenant: str = DEFAULT_TENANT,
    display_name: str = "",
    denied: tuple[str, ...] = (),
    token_lifetime: int = TOKEN_LIFETIME_SECONDS,
) -> EmulatorRecord:
    """Create or replace a sandbox app registration; `denied` lists emulators where it has no app user."""
    record, _ = EmulatorRecord.objects.update_or_create(
        emulator=EMULATOR,
        entity="app",
        company="",
        key=_app_key(tenant, client_id),
        defaults={
            "data": {
                "tenant": tenant,
                "client_id": client_id,
                "display_name": display_name or f"icbridge sandbox app {client_id[:8]}",
                "secret_sha256": secret_hash(client_secret),
                "object_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{client_id}")),
                "denied": list(denied),
                "token_lifetime": token_lifetime,
                "tokens_issued": 0,
            }
        },
    )
    return record


def register_user(*, upn: str, password: str, tenant: str = DEFAULT_TENANT) -> EmulatorRecord:
    """Create or replace a sandbox user account (a service account signing in with its password)."""
    record, _ = EmulatorRecord.objects.update_or_create(
        emulator=EMULATOR,
        entity="user",
        company="",
        key=f"{tenant}/{upn.lower()}",
        defaults={
            "data": {
                "upn": upn,
                "password_sha256": secret_hash(password),
                "object_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/user/{upn.lower()}")),
            }
        },
    )
    return record


def find_user(tenant: str, upn: str) -> EmulatorRecord | None:
    return EmulatorRecord.objects.filter(emulator=EMULATOR, entity="user", key=f"{tenant}/{upn.lower()}").first()


def _app_key(tenant: str, client_id: str) -> str:
    return f"{tenant}/{client_id}"


def find_app(tenant: str, client_id: str) -> EmulatorRecord | None:
    return EmulatorRecord.objects.filter(emulator=EMULATOR, entity="app", key=_app_key(tenant, client_id)).first()


def tokens_issued(client_id: str, tenant: str = DEFAULT_TENANT) -> int:
    """How many tokens the sandbox issued to this app (msal's cache should keep this low)."""
    record = find_app(tenant, client_id)
    return int(record.data.get("tokens_issued", 0)) if record else 0


def tenant_known(tenant: str) -> bool:
    return EmulatorRecord.objects.filter(emulator=EMULATOR, entity="app", key__startswith=f"{tenant}/").exists()


def reset() -> None:
    """Drop every app registration (and with it the issued-token counters)."""
    EmulatorRecord.objects.filter(emulator=EMULATOR).delete()
