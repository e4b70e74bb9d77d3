"""Install a scenario template (systems, company links, value maps, flows, inbound endpoints) into a hub.

Idempotent: an object that already exists is left as it is (an operator may have tuned it),
so installing twice changes nothing. update=True brings existing objects back to the
template's values; a changed mapping spec then gets a new MappingVersion.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction

from integrations.flow_options import options_problems
from integrations.models import (
    CompanyLink,
    Flow,
    System,
    ValueMap,
    ValueMapEntry,
)
from integrations.scenarios.templates import TEMPLATES, TemplateError, render
from integrations.services.audit import audit_record
from integrations.services.mappings import flow_mapping_save
from integrations.services.record_keys import rekey_links

logger = logging.getLogger(__name__)


@dataclass
class InstallReport:
    template: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    differs: list[str] = field(default_factory=list)  # existing objects that differ from the template, kept

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)

    def summary(self) -> str:
        parts = [f"template '{self.template}':"]
        for label, items in (
            ("created", self.created),
            ("updated", self.updated),
            ("unchanged", self.unchanged),
            ("kept (differs from template)", self.differs),
        ):
            if items:
                parts.append(f"{len(items)} {label}")
        return " ".join(parts) if len(parts) > 1 else f"template '{self.template}': nothing to install"


def _differences(obj: models.Model, values: dict[str, Any]) -> list[str]:
    names = []
    for name, value in values.items():
        current = getattr(obj, name)
        if isinstance(current, models.Model):
            current = current.pk
            value = value.pk if isinstance(value, models.Model) else value
        if current != value:
            names.append(name)
    return names


def _apply(
    model: type[models.Model],
    lookup: dict[str, Any],
    values: dict[str, Any],
    *,
    label: str,
    report: InstallReport,
    update: bool,
) -> tuple[models.Model, bool]:
    """Create the object, or compare it to the template; returns (object, whether it was written)."""
    obj = model.objects.filter(**lookup).first()
    if obj is None:
        obj = model(**lookup, **values)
        obj.full_clean(validate_unique=False, validate_constraints=False)
        obj.save()
        report.created.append(label)
        return obj, True
    different = _differences(obj, values)
    if not different:
        report.unchanged.append(label)
        return obj, False
    if not update:
        report.differs.append(f"{label} ({', '.join(different)})")
        return obj, False
    for name in different:
        setattr(obj, name, values[name])
    obj.save()
    report.updated.append(f"{label} ({', '.join(different)})")
    return obj, True


def _system_values(spec: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", *System.CONNECTION_FIELDS, "scope", "settings", *System.LIMIT_FIELDS)
    return {key: spec[key] for key in keys if key in spec}


def templates_install(
    *, name: str, base_url: str, actor: Any = None, update: bool = False, sandbox: bool = True
) -> InstallReport:
    """Install one template against the systems at base_url (the hub's own sandbox, or real ones).

    1. Render the template for base_url ({base} in URLs) and validate its references.
    2. In one transaction create what is missing: systems, company links, value maps, flows (with
       MappingVersion 1) and inbound endpoints; with sandbox=True also the Azure AD emulator's app
       registration and the emulators' event subscriptions (the demo; real systems need neither).
    3. Audit the install when it changed anything.
    """
    if name not in TEMPLATES:
        raise TemplateError(f"unknown template '{name}'; known: {', '.join(sorted(TEMPLATES))}")
    data = render(name, base_url=base_url)
    report = InstallReport(template=name)
    with transaction.atomic():
        systems: dict[str, System] = {}
        for spec in data["systems"]:
            system, written = _apply(
                System,
                {"slug": spec["slug"]},
                _system_values(spec),
                label=f"system {spec['slug']}",
                report=report,
                update=update,
            )
            # The secret is write-only: set on create (or update), never compared, so a rotated one is kept.
            if written and spec.get("secret") and (update or system.secret is None or system.secret == ""):
                system.secret = spec["secret"]
                system.save(update_fields=["secret", "updated_at"])
            systems[spec["slug"]] = system
        links: dict[str, CompanyLink] = {}
        for spec in data.get("company_links", []):
            values = {
                **{k: v for k, v in spec.items() if k not in ("name", "system_a", "system_b")},
                "system_a": systems[spec["system_a"]],
                "system_b": systems[spec["system_b"]],
            }
            links[spec["name"]], _ = _apply(
                CompanyLink,
                {"name": spec["name"]},
                values,
                label=f"company link {spec['name']}",
                report=report,
                update=update,
            )
        for spec in data.get("value_maps", []):
            value_map, _ = _apply(
                ValueMap,
                {"name": spec["name"]},
                {"description": spec.get("description", "")},
                label=f"value map {spec['name']}",
                report=report,
                update=update,
            )
            for source_value, target_value in spec["entries"].items():
                _apply(
                    ValueMapEntry,
                    {"value_map": value_map, "source_value": source_value},
                    {"target_value": target_value},
                    label=f"value map {spec['name']}: {source_value}",
                    report=report,
                    update=update,
                )
        for spec in data["flows"]:
            _install_flow(spec, systems, links, actor=actor, report=report, update=update, sandbox=sandbox)
        if sandbox:
            _install_sandbox_apps(data["systems"], report=report)
            _install_ax_document_filters(data["systems"], data["flows"], report=report)
            _install_finops_change_tracking(data["systems"], data["flows"], report=report)
            _install_finops_units(data, report=report)
            _install_subscriptions(data.get("subscriptions", []), report=report, update=update)
        if report.changed:
            audit_record(
                actor=actor,
                action="install_template",
                obj=None,
                object_type="template",
                object_id=name,
                reason=report.summary(),
                details={"base_url": base_url, "created": report.created, "updated": report.updated},
            )
    logger.info("%s", report.summary())
    return report


FLOW_FIELDS = (
    "name",
    "entity",
    "trigger",
    "target_entity",
    "target_operation",
    "target_key_fields",
    "mapping_spec",
    "master",
    "conflict_policy",
    "retry_policy",
    "options",
    "enabled",
)


def _install_flow(
    spec: dict[str, Any],
    systems: dict[str, System],
    links: dict[str, CompanyLink],
    *,
    actor: Any,
    report: InstallReport,
    update: bool,
    sandbox: bool = True,
) -> Flow:
    values: dict[str, Any] = {key: spec[key] for key in FLOW_FIELDS if key in spec}
    # Checked before anything is written, on update too (Flow.clean checks a created flow again).
    if problems := options_problems(values.get("options", {})):
        raise TemplateError(f"flow {spec['slug']}: {'; '.join(problems)}")
    values["source"] = systems[spec["source"]]
    values["target"] = systems[spec["target"]]
    values["company_link"] = links[spec["company_link"]] if spec.get("company_link") else None
    mapping_spec = values.pop("mapping_spec", {})
    existing = Flow.objects.filter(slug=spec["slug"]).first()
    if existing is None:
        values["mapping_spec"] = mapping_spec
    flow, _ = _apply(Flow, {"slug": spec["slug"]}, values, label=f"flow {spec['slug']}", report=report, update=update)
    if existing is None or (update and existing.mapping_spec != mapping_spec):
        # Versioned like an operator's save: the first install records version 1, an update N+1.
        try:
            flow_mapping_save(flow=flow, spec=mapping_spec, actor=actor, comment=f"template {report.template}")
        except ValidationError as exc:
            raise TemplateError(f"flow {spec['slug']}: mapping spec: {'; '.join(exc.messages)}") from exc
        if existing is not None:
            report.updated.append(f"flow {spec['slug']} (mapping_spec → v{flow.mapping_version})")
    elif existing.mapping_spec != mapping_spec:
        report.differs.append(f"flow {spec['slug']} (mapping_spec)")
    if spec.get("inbound"):
        inbound = spec["inbound"] if sandbox else _inbound_for_real_systems(spec["inbound"])
        _install_inbound(flow, inbound, report=report, update=update)
    return flow


def _inbound_for_real_systems(spec: dict[str, Any]) -> dict[str, Any]:
    """Against real systems no endpoint is open ("none") and none has the templates' published key.

    Each gets a random key nobody knows, so it refuses events until an engineer sets the key
    they also give the sender (the secret field is write-only).
    """
    hardened = dict(spec)
    if hardened.get("auth_type", "none") == "none":
        hardened["auth_type"] = "header"
    hardened["secret"] = secrets.token_urlsafe(32)
    return hardened


def _install_inbound(flow: Flow, spec: dict[str, Any], *, report: InstallReport, update: bool) -> None:
    from integrations.models import InboundEndpoint

    values = {key: value for key, value in spec.items() if key != "secret"}
    before = InboundEndpoint.objects.filter(flow=flow).values_list("record_key_pointer", flat=True).first()
    endpoint, written = _apply(
        InboundEndpoint, {"flow": flow}, values, label=f"inbound endpoint of {flow.slug}", report=report, update=update
    )
    if written and before is not None and before != endpoint.record_key_pointer:
        report.updated.append(f"record keys of {flow.slug}: {rekey_links(endpoint, previous=before)}")
    if written and spec.get("secret"):
        endpoint.secret = spec["secret"]
        endpoint.save(update_fields=["secret", "updated_at"])


def _install_sandbox_apps(systems: list[dict[str, Any]], *, report: InstallReport) -> None:
    """Register the systems' client ids with the Azure AD emulator, so msal gets tokens in the demo."""
    from sandbox import azuread
    from sandbox.models import EmulatorRecord

    for spec in systems:
        if spec.get("auth_type") != "client_credentials" or "/sandbox/azuread/" not in spec.get("auth_url", ""):
            continue
        tenant = spec["auth_url"].rstrip("/").rsplit("/", 1)[-1]
        apps = EmulatorRecord.objects.filter(emulator=azuread.EMULATOR, entity="app")
        if apps.filter(data__tenant=tenant, data__client_id=spec["client_id"]).exists():
            continue
        azuread.register_app(client_id=spec["client_id"], client_secret=spec["secret"], tenant=tenant)
        report.created.append(f"sandbox app {spec['client_id']}")


def _install_ax_document_filters(
    systems: list[dict[str, Any]], flows: list[dict[str, Any]], *, report: InstallReport
) -> None:
    """Give each AX port a polled flow reads a document filter: without one AIF's getChangedKeys answers no
    keys ("Configuring AIF for change tracking"), as an AX administrator sets it up on the inbound port."""
    from integrations.systems.ax2012.services import AX_SERVICES
    from sandbox.ax2012 import ports

    ax_slugs = {spec["slug"] for spec in systems if spec["kind"] == "ax2012"}
    for spec in flows:
        if spec["source"] not in ax_slugs or spec.get("trigger") != "poll":
            continue
        service = spec.get("options", {}).get("ax_service") or AX_SERVICES.get(spec["entity"].lower())
        if service and ports.document_filters(service) is None:
            ports.set_document_filters(service, [{}])  # a filter without ranges: every document
            report.created.append(f"sandbox AX document filter {service}")


def _install_finops_change_tracking(
    systems: list[dict[str, Any]], flows: list[dict[str, Any]], *, report: InstallReport
) -> None:
    """Set up what each F&O poll flow exports, as an F&O administrator does in Data management ("Enable change
    tracking for entities"): change tracking on the polled entity, and the flow's data project exporting it
    with "Incremental push only". Without them F&O can only export everything each time."""
    from sandbox.finops.packages import change_tracking, change_tracking_enabled, data_project, data_project_get

    finops_slugs = {spec["slug"] for spec in systems if spec["kind"] == "finops"}
    for spec in flows:
        options = spec.get("options", {})
        if spec["source"] not in finops_slugs or spec.get("trigger") != "poll" or not options.get("package_project"):
            continue
        entity, project = options["poll"]["entity"], options["package_project"]
        if not change_tracking_enabled(entity):
            change_tracking(entity)
            report.created.append(f"sandbox F&O change tracking {entity}")
        if data_project_get(project) is None:
            data_project(project, entities=[entity], incremental=True)
            report.created.append(f"sandbox F&O data project {project}")


def _install_finops_units(data: dict[str, Any], *, report: InstallReport) -> None:
    """Create the units the demo's order lines name, once for every F&O legal entity (units are shared), as an
    F&O administrator sets them up: F&O refuses a line whose unit is no unit of measure. The items are
    released by the traffic generator, as F&O users release products (traffic.finops_items)."""
    from integrations.scenarios.traffic import UNITS
    from sandbox.finops.lines import reference_data_seed

    if any(spec["kind"] == "finops" for spec in data["systems"]) and reference_data_seed(
        companies=[], items=[], units=UNITS
    ):
        report.created.append(f"sandbox F&O units {', '.join(UNITS)}")


def _install_subscriptions(specs: list[dict[str, Any]], *, report: InstallReport, update: bool) -> None:
    """Tell the sandbox emulators where to push their events (only when installing against the sandbox)."""
    if not specs:
        return
    from sandbox.models import EmulatorSubscription

    for spec in specs:
        _apply(
            EmulatorSubscription,
            {"emulator": spec["emulator"], "event_type": spec.get("event_type", ""), "url": spec["url"]},
            {"headers": spec.get("headers", {}), "enabled": True},
            label=f"subscription {spec['emulator']} {spec.get('event_type') or '*'}",
            report=report,
            update=update,
        )


def seed_scenarios(base_url: str, *, actor: Any = None) -> list[InstallReport]:
    """Install every scenario template against this hub's sandbox (called by `manage.py seed_demo`)."""
    return [templates_install(name=name, base_url=base_url, actor=actor) for name in TEMPLATES]
