"""The admin roles as Django groups: operator, integration engineer, auditor.

Permissions are Django model permissions, so the admin, the console and the REST API
check the same thing (e.g. integrations.change_message lets a user retry, discard and replay).
"""

from __future__ import annotations

from django.apps import apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.db import transaction

OPERATOR = "operator"
ENGINEER = "integration engineer"
AUDITOR = "auditor"

# Models of the integrations app each role may see or edit, by permission codename.
_READ_PIPELINE = ["view_message", "view_attempt", "view_flow", "view_system", "view_companylink", "view_recordlink"]
_CONFIGURATION = ["system", "flow", "companylink", "mappingversion", "valuemap", "valuemapentry", "inboundendpoint"]


def role_permissions() -> dict[str, set[str]]:
    """Role → "app_label.codename" permissions; the auditor sees every model of the hub's apps."""
    configure = {
        f"integrations.{action}_{model}" for model in _CONFIGURATION for action in ("view", "add", "change", "delete")
    }
    read_all = {
        f"{model._meta.app_label}.view_{model._meta.model_name}"
        for label in ("integrations", "monitoring")
        if apps.is_installed(label)
        for model in apps.get_app_config(label).get_models()
    }
    return {
        OPERATOR: {f"integrations.{name}" for name in _READ_PIPELINE}
        | {"integrations.change_message", "integrations.view_loadrun"},
        # Engineers start initial loads (change_flow) and cancel them (change_loadrun); runs are never edited.
        ENGINEER: configure
        | {f"integrations.{name}" for name in _READ_PIPELINE}
        | {"integrations.view_loadrun", "integrations.change_loadrun"},
        AUDITOR: read_all,
    }


def roles_ensure() -> dict[str, Group]:
    """Create or update the three groups so each has exactly its role's permissions; safe to run again."""
    for label in ("integrations", "monitoring"):
        if apps.is_installed(label):
            # Permissions normally appear after migrate; create them here so this works on any database.
            create_permissions(apps.get_app_config(label), verbosity=0)
    wanted = role_permissions()
    groups: dict[str, Group] = {}
    with transaction.atomic():
        for name, perms in wanted.items():
            group, _ = Group.objects.get_or_create(name=name)
            found = []
            for perm in sorted(perms):
                app_label, codename = perm.split(".", 1)
                permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
                if permission is None:
                    raise LookupError(f"permission {perm} does not exist; run migrate first")
                found.append(permission)
            group.permissions.set(found)
            groups[name] = group
    return groups
