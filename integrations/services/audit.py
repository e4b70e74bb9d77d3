"""The one audit writer: every operator action and configuration change leaves an AuditEntry."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from integrations.models import AuditEntry, Message


def audit_record(
    *,
    actor: AbstractBaseUser | AnonymousUser | None,
    action: str,
    obj: Any,
    reason: str = "",
    message: Message | None = None,
    details: dict[str, Any] | None = None,
    object_type: str = "",
    object_id: str = "",
) -> AuditEntry:
    """Append one entry; `obj` names what was acted on (or object_type/object_id for things without a row)."""
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    return AuditEntry.objects.create(
        actor=user,
        actor_name=user.get_username() if user else "system",
        action=action,
        object_type=object_type or type(obj).__name__.lower(),
        object_id=object_id or str(obj.pk),
        message=message,
        reason=reason,
        details=details or {},
    )
