"""Monitoring's share of the console roles, on top of integrations.services.roles.

roles_ensure() there gives each group its integrations permissions; this adds the monitoring models:
the integration engineer edits reconciliation schedules and alert rules, the operator sees runs,
discrepancies and alerts, the auditor already sees every model of both apps.
"""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.db import transaction

from integrations.services import roles

_VIEW_MONITORING = ["reconciliationschedule", "reconciliationrun", "discrepancy", "alertrule", "alert", "heartbeat"]
_ENGINEER_EDITS = ["reconciliationschedule", "alertrule"]


def extra_permissions() -> dict[str, set[str]]:
    viewing = {f"monitoring.view_{model}" for model in _VIEW_MONITORING}
    return {
        roles.OPERATOR: viewing,
        roles.ENGINEER: viewing
        | {f"monitoring.{action}_{model}" for model in _ENGINEER_EDITS for action in ("add", "change", "delete")},
        roles.AUDITOR: set(),
    }


def console_roles_ensure() -> dict[str, Group]:
    """The three groups with their integrations and monitoring permissions; safe to run again."""
    with transaction.atomic():
        groups = roles.roles_ensure()
        for name, perms in extra_permissions().items():
            for perm in sorted(perms):
                app_label, codename = perm.split(".", 1)
                groups[name].permissions.add(
                    Permission.objects.get(content_type__app_label=app_label, codename=codename)
                )
    return groups
