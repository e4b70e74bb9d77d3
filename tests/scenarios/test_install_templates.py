"""Installing the scenario templates: command, console page and service; twice changes nothing."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from integrations.models import (
    AuditEntry,
    CompanyLink,
    Flow,
    InboundEndpoint,
    MappingVersion,
    Message,
    RecordLink,
    System,
    ValueMap,
    ValueMapEntry,
)
from integrations.scenarios.install import templates_install
from integrations.scenarios.templates import TEMPLATES, TemplateError, raw, render
from integrations.scenarios.templates.builders import SANDBOX_UOMS

pytestmark = pytest.mark.django_db
BASE = "http://hub.example:8000"
MODELS = (System, CompanyLink, Flow, ValueMap, ValueMapEntry, MappingVersion, InboundEndpoint)


def snapshot() -> dict[str, list]:
    return {model.__name__: list(model.objects.order_by("pk").values()) for model in MODELS}


def test_command_installs_every_template_into_a_fresh_hub():
    out = StringIO()

    call_command("install_templates", "--base-url", BASE, "--no-sandbox", stdout=out)

    assert Flow.objects.filter(options__template="intercompany").count() == 4
    assert Flow.objects.filter(options__template="prospect_to_cash").count() == 9
    assert Flow.objects.filter(options__template="order_to_cash").count() == 5
    assert set(System.objects.values_list("slug", flat=True)) == {
        "sandbox-ax2012",
        "sandbox-finops",
        "sandbox-dataverse",
        "sandbox-s4hana",
    }
    fo = System.objects.get(slug="sandbox-finops")
    assert fo.base_url == f"{BASE}/sandbox/finops"
    assert fo.secret
    assert "created" in out.getvalue()


def test_installing_twice_changes_nothing():
    call_command("install_templates", "--base-url", BASE, "--no-sandbox", stdout=StringIO())
    before = snapshot()
    audits = AuditEntry.objects.count()
    out = StringIO()

    call_command("install_templates", "--base-url", BASE, "--no-sandbox", stdout=out)

    assert snapshot() == before
    assert AuditEntry.objects.count() == audits
    assert "created" not in out.getvalue()
    assert "unchanged" in out.getvalue()


def test_intercompany_link_and_first_flow_are_wired_for_dk01_and_se01():
    templates_install(name="intercompany", base_url=BASE, sandbox=False)

    link = CompanyLink.objects.get(name="DK01@AX-SE01@F&O")
    flow = Flow.objects.get(slug="ic-dk01-po-to-se01-so")
    assert (link.system_a.kind, link.company_a, link.system_b.kind, link.company_b) == (
        "ax2012",
        "DK01",
        "finops",
        "SE01",
    )
    assert link.context_for(flow.source)["target_customer_for_source"] == "IC-DK01"
    assert (flow.source, flow.target, flow.trigger) == (link.system_a, link.system_b, "poll")
    assert flow.mapping_versions.get().version == flow.mapping_version == 1
    packing = Flow.objects.get(slug="ic-se01-packingslip-to-dk01-receipt")
    assert packing.options["chain"]["follows"] == flow.slug


def test_operator_edit_is_kept_and_reported_unless_update_is_asked():
    templates_install(name="order_to_cash", base_url=BASE, sandbox=False)
    flow = Flow.objects.get(slug="o2c-orders-d365-to-s4")
    flow.retry_policy = {"max_attempts": 3}
    flow.save()

    kept = templates_install(name="order_to_cash", base_url=BASE, sandbox=False)
    restored = templates_install(name="order_to_cash", base_url=BASE, update=True, sandbox=False)

    assert any("o2c-orders-d365-to-s4 (retry_policy)" in line for line in kept.differs)
    assert any("o2c-orders-d365-to-s4" in line for line in restored.updated)
    flow.refresh_from_db()
    assert flow.retry_policy["max_attempts"] == 10


def test_an_update_of_a_record_key_pointer_rekeys_the_flows_links_from_their_last_messages():
    """The holds flow was keyed by /SalesOrderNumber; its template now says /SalesOrderNumber,/HoldCode.
    Updating an installed hub re-keys its links (each from its last message), so the next event of an old
    hold finds its link and reconciliation does not report old holds as missing from the hub."""
    templates_install(name="prospect_to_cash", base_url=BASE, sandbox=False)
    flow = Flow.objects.get(slug="p2c-holds-fo-to-sales-tasks")
    InboundEndpoint.objects.filter(flow=flow).update(record_key_pointer="/SalesOrderNumber")

    def link(key: str, payload: dict, task: str) -> RecordLink:
        message = Message.objects.create(flow=flow, idempotency_key=f"e-{task}", payload_in=payload)
        return RecordLink.objects.create(flow=flow, source_key=key, target_key=task, last_message=message)

    old = link("SO-1", {"SalesOrderNumber": "SO-1", "HoldCode": "Credit"}, "task-1")
    clash = link("SO-1|Credit", {"SalesOrderNumber": "SO-1", "HoldCode": "Credit"}, "task-x")  # the new form
    broken = link("SO-3", {"SalesOrderNumber": "SO-3"}, "task-3")  # its payload names no hold code
    unsent = RecordLink.objects.create(flow=flow, source_key="SO-4", target_key="task-4")

    report = templates_install(name="prospect_to_cash", base_url=BASE, update=True, sandbox=False)

    assert InboundEndpoint.objects.get(flow=flow).record_key_pointer == "/SalesOrderNumber,/HoldCode"
    said = "0 record links re-keyed, 3 kept their key, 1 clashed, 0 waiting messages re-keyed"
    assert f"record keys of {flow.slug}: {said}" in report.updated
    for kept in (old, clash, broken, unsent):
        kept.refresh_from_db()
    assert (old.source_key, clash.source_key, broken.source_key, unsent.source_key) == (
        "SO-1", "SO-1|Credit", "SO-3", "SO-4"
    )  # fmt: skip
    clash.delete()
    InboundEndpoint.objects.filter(flow=flow).update(record_key_pointer="/SalesOrderNumber")
    templates_install(name="prospect_to_cash", base_url=BASE, update=True, sandbox=False)
    old.refresh_from_db()
    assert (old.source_key, old.target_key) == ("SO-1|Credit", "task-1")


def test_a_record_key_pointer_with_an_empty_part_is_refused():
    templates_install(name="prospect_to_cash", base_url=BASE, sandbox=False)
    endpoint = InboundEndpoint.objects.get(flow__slug="p2c-holds-fo-to-sales-tasks")
    endpoint.record_key_pointer = "/SalesOrderNumber,"

    with pytest.raises(ValidationError, match="has an empty one"):
        endpoint.full_clean()


def test_update_of_a_changed_mapping_records_a_new_version():
    templates_install(name="order_to_cash", base_url=BASE, sandbox=False)
    flow = Flow.objects.get(slug="o2c-bp-s4-to-d365")
    Flow.objects.filter(pk=flow.pk).update(mapping_spec={"fields": {"name": "OrganizationBPName1"}})

    templates_install(name="order_to_cash", base_url=BASE, update=True, sandbox=False)

    flow.refresh_from_db()
    assert flow.mapping_version == 2
    assert flow.mapping_versions.get(version=2).spec == flow.mapping_spec


def test_value_maps_of_order_to_cash_are_installed():
    templates_install(name="order_to_cash", base_url=BASE, sandbox=False)

    # Keyed by the uom row a D365 line names (_uomid_value), not by the unit's name.
    units = ValueMap.objects.get(name="o2c-uom-d365-to-s4").as_dict()
    assert (units[SANDBOX_UOMS["ea"]], units[SANDBOX_UOMS["pcs"]]) == ("EA", "PC")


def test_unknown_template_is_refused_with_the_known_names():
    with pytest.raises(CommandError, match="unknown template.*intercompany"):
        call_command("install_templates", "nope", stdout=StringIO())


def test_template_with_a_broken_reference_is_refused_naming_the_flow(monkeypatch):
    from integrations.scenarios.templates import intercompany

    broken = {**intercompany.TEMPLATE, "flows": [{**intercompany.TEMPLATE["flows"][1], "source": "sandbox-nowhere"}]}
    monkeypatch.setattr(intercompany, "TEMPLATE", broken)

    with pytest.raises(TemplateError, match="ic-se01-packingslip-to-dk01-receipt: source 'sandbox-nowhere'"):
        render("intercompany", base_url=BASE)


def test_every_template_mapping_compiles():
    for name in TEMPLATES:
        data = render(name, base_url=BASE)
        assert all(flow["options"]["template"] == name for flow in data["flows"])


def test_console_page_lists_and_installs_templates(staff_client):
    page = staff_client.get("/admin/scenario-templates/")
    response = staff_client.post(
        "/admin/scenario-templates/", {"template": ["intercompany"], "base_url": BASE}, follow=True
    )

    assert page.status_code == 200
    assert b"Intercompany" in page.content
    assert response.status_code == 200
    assert Flow.objects.filter(options__template="intercompany").count() == 4
    audit = AuditEntry.objects.get(action="install_template")
    assert audit.actor_name == "operator"
    assert audit.object_id == "intercompany"


def test_sandbox_install_registers_the_app_and_subscribes_the_event_flows():
    from sandbox.models import EmulatorRecord, EmulatorSubscription

    templates_install(name="intercompany", base_url=BASE)
    again = templates_install(name="intercompany", base_url=BASE)

    assert EmulatorRecord.objects.filter(emulator="azuread", entity="app").count() == 1
    packing = EmulatorSubscription.objects.get(event_type="SalesPackingSlipPostedBusinessEvent")
    assert packing.url == f"{BASE}/api/events/finops/ic-se01-packingslip-to-dk01-receipt"
    assert not again.changed


def test_dataverse_webhook_flows_register_webhook_steps_with_their_inbound_key():
    from sandbox.models import EmulatorSubscription

    templates_install(name="prospect_to_cash", base_url=BASE)
    templates_install(name="order_to_cash", base_url=BASE)

    steps = {
        (step.event_type, step.url.removeprefix(f"{BASE}/api/webhooks/dataverse/")): step.headers
        for step in EmulatorSubscription.objects.filter(emulator="dataverse")
    }
    every_message = ("Create", "Update", "Delete")  # flows that carry deletes (options.on_delete) register Delete
    assert set(steps) == {
        *((f"account:{m}", "p2c-accounts-sales-to-fo") for m in every_message),
        ("contact", "p2c-contacts-sales-to-fo"),
        ("quote", "p2c-quotes-sales-to-fo"),
        ("salesorder", "p2c-orders-sales-to-fo"),
        ("task:Update", "p2c-tasks-sales-to-fo-holds"),  # options.webhook_messages: a completed task is an Update
        *((f"account:{m}", "o2c-accounts-d365-to-s4") for m in every_message),
        *((f"salesorder:{m}", "o2c-orders-d365-to-s4") for m in every_message),
    }
    endpoint = InboundEndpoint.objects.get(flow__slug="p2c-accounts-sales-to-fo")
    assert set(map(str, steps.values())) == {str({endpoint.credential_name: endpoint.secret})}


def test_webhook_steps_send_a_query_key_or_nothing_and_bad_settings_name_the_flow(monkeypatch):
    template = raw("prospect_to_cash")
    accounts, contacts, quotes = (
        next(flow for flow in template["flows"] if flow["slug"] == slug)
        for slug in ("p2c-accounts-sales-to-fo", "p2c-contacts-sales-to-fo", "p2c-quotes-sales-to-fo")
    )
    monkeypatch.setitem(accounts, "inbound", {"auth_type": "query_key", "secret": "k 1"})
    monkeypatch.setitem(contacts, "inbound", {"auth_type": "none"})

    steps = {step["event_type"]: step for step in render("prospect_to_cash", base_url=BASE)["subscriptions"]}

    # The account flow registers a step per message it carries (Create, Update, Delete: options.on_delete).
    assert steps["account:Create"]["url"] == f"{BASE}/api/webhooks/dataverse/p2c-accounts-sales-to-fo?code=k+1"
    assert steps["account:Delete"]["headers"] == {}
    assert steps["contact"]["headers"] == {}
    monkeypatch.setitem(quotes, "options", {**quotes["options"], "webhook_messages": ["Upsert"]})
    with pytest.raises(TemplateError, match="prospect_to_cash: flow p2c-quotes-sales-to-fo: options.webhook_messages"):
        render("prospect_to_cash", base_url=BASE)
    monkeypatch.setitem(quotes, "inbound", {"auth_type": "hmac", "secret": "x"})
    with pytest.raises(TemplateError, match="p2c-quotes-sales-to-fo: inbound auth_type 'hmac' is not one a Dataverse"):
        render("prospect_to_cash", base_url=BASE)
