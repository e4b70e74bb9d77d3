"""The console pages of flows, mapping versions and value maps."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from integrations.models import AuditEntry, Flow, MappingVersion, ValueMap, ValueMapEntry
from integrations.pipeline.ingest import message_ingest


@pytest.fixture
def console(db) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", password="x"))
    return client


def form_data(flow: Flow, **changes: Any) -> dict[str, Any]:
    data = {
        "name": flow.name,
        "slug": flow.slug,
        "entity": flow.entity,
        "source": flow.source_id,
        "target": flow.target_id,
        "company_link": "",
        "trigger": flow.trigger,
        "enabled": "on",
        "target_entity": flow.target_entity,
        "target_operation": flow.target_operation,
        "target_key_fields": json.dumps(flow.target_key_fields),
        "options": json.dumps(flow.options),
        "mapping_spec": json.dumps(flow.mapping_spec),
        "mapping_comment": "",
        "master": flow.master,
        "conflict_policy": flow.conflict_policy,
        "retry_policy": json.dumps(flow.retry_policy),
    }
    data.update(changes)
    return data


def change_url(flow: Flow) -> str:
    return reverse("admin:integrations_flow_change", args=[flow.pk])


def test_saving_a_changed_spec_in_the_console_creates_a_version(console, make_flow):
    flow = make_flow(mapping_spec={"fields": {"A": "a"}})
    spec = {"fields": {"A": "a", "B": {"path": "b", "type": "integer"}}}

    response = console.post(change_url(flow), form_data(flow, mapping_spec=json.dumps(spec), mapping_comment="add B"))

    assert response.status_code == 302
    flow.refresh_from_db()
    assert (flow.mapping_version, flow.mapping_spec) == (2, spec)
    latest = MappingVersion.objects.get(flow=flow, version=2)
    assert (latest.comment, latest.created_by.username) == ("add B", "root")
    assert MappingVersion.objects.get(flow=flow, version=1).spec == {"fields": {"A": "a"}}


def test_saving_other_fields_does_not_add_a_version(console, make_flow):
    flow = make_flow(mapping_spec={"fields": {"A": "a"}})

    console.post(change_url(flow), form_data(flow, target_entity="SalesOrderHeadersV2"))

    flow.refresh_from_db()
    assert (flow.target_entity, flow.mapping_version) == ("SalesOrderHeadersV2", 1)
    assert not MappingVersion.objects.exists()


def test_an_invalid_spec_is_refused_on_the_form_naming_the_field(console, make_flow):
    flow = make_flow(mapping_spec={"fields": {"A": "a"}})
    spec = {"fields": {"Total": {"expr": "Qty * 'x'"}, "Unit": {"path": "u", "lookup": "no-such-map"}}}

    response = console.post(change_url(flow), form_data(flow, mapping_spec=json.dumps(spec)))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["mapping_spec"]
    assert errors == [
        "field 'Total': expr \"Qty * 'x'\": '*' needs numbers, but 'x' is not a number (use & to join text)",
    ]
    flow.refresh_from_db()
    assert flow.mapping_version == 1


def test_a_missing_value_map_is_refused_on_the_form(console, make_flow):
    flow = make_flow()
    spec = {"fields": {"Unit": {"path": "u", "lookup": "no-such-map"}}}

    response = console.post(change_url(flow), form_data(flow, mapping_spec=json.dumps(spec)))

    assert response.context["adminform"].form.errors["mapping_spec"] == [
        "field 'Unit': value map 'no-such-map' does not exist"
    ]


def test_a_bad_retry_policy_is_refused(console, make_flow):
    flow = make_flow()

    response = console.post(change_url(flow), form_data(flow, retry_policy=json.dumps({"max_attempts": 0})))

    assert response.context["adminform"].form.errors["retry_policy"] == [
        "retry_policy.max_attempts: must be at least 1"
    ]


def test_an_unknown_option_is_refused_on_the_form_naming_the_key(console, make_flow):
    flow = make_flow(options={"only_when": {"statecode": 1}})
    options = {"only_when": {"statecode": {"nto": [1]}}, "echo_off": []}

    response = console.post(change_url(flow), form_data(flow, options=json.dumps(options)))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["options"]
    assert errors[0].startswith("options: unknown key 'echo_off'; allowed: chain, links, fetch, only_when, echo_of")
    assert errors[1] == "options.only_when.statecode: unknown key 'nto'; allowed: not"
    flow.refresh_from_db()
    assert flow.options == {"only_when": {"statecode": 1}}


def test_an_ill_typed_option_is_refused_on_the_form_naming_the_key(console, make_flow):
    flow = make_flow()
    options = {"poll": {"entity": "ReleasedProductsV2", "key": 5}}

    response = console.post(change_url(flow), form_data(flow, options=json.dumps(options)))

    assert response.context["adminform"].form.errors["options"] == [
        "options.poll.key: expected a string or a non-empty list of strings, got 5"
    ]
    flow.refresh_from_db()
    assert flow.options == {}


def test_valid_options_are_saved_as_given(console, make_flow):
    flow = make_flow()
    options = {"echo_of": [], "only_when": {"CustomerAccount": {"not": ["IC-DK01"]}}}

    response = console.post(change_url(flow), form_data(flow, options=json.dumps(options)))

    assert response.status_code == 302
    flow.refresh_from_db()
    assert flow.options == options


def test_adding_a_flow_records_its_first_mapping_version(console, make_flow, make_system):
    template = make_flow()
    data = form_data(template, name="New flow", slug="new-flow", mapping_spec=json.dumps({"fields": {"X": "x"}}))

    response = console.post(reverse("admin:integrations_flow_add"), data)

    assert response.status_code == 302
    flow = Flow.objects.get(slug="new-flow")
    version = MappingVersion.objects.get(flow=flow)
    assert (version.version, version.spec, flow.mapping_version) == (1, {"fields": {"X": "x"}}, 1)


def test_preview_page_prefills_a_recent_payload_and_shows_the_output(console, make_flow):
    flow = make_flow(mapping_spec={"fields": {"Order": "SalesOrderNumber"}})
    message, _ = message_ingest(flow=flow, payload={"SalesOrderNumber": "SO-9"}, idempotency_key="k1")
    url = reverse("admin:integrations_flow_mapping_preview", args=[flow.pk])

    page = console.get(url)
    result = console.post(url, {"payload": json.dumps(message.payload_in), "spec": json.dumps(flow.mapping_spec)})
    draft = console.post(
        url,
        {
            "payload": '{"SalesOrderNumber": "SO-9"}',
            "spec": '{"fields": {"N": {"path": "SalesOrderNumber", "type": "integer"}}}',
        },
    )
    broken = console.post(url, {"payload": "{not json", "spec": ""})

    assert page.status_code == 200
    assert json.loads(page.context["payload_text"]) == {"SalesOrderNumber": "SO-9"}
    assert json.loads(result.context["output"]) == {"Order": "SO-9"}
    assert draft.context["problems"] == ["field 'N': 'SO-9' is not a number (source 'SalesOrderNumber', value 'SO-9')"]
    assert broken.context["problems"][0].startswith("The sample payload is not valid JSON")
    assert b"Preview mapping" in console.get(change_url(flow)).content


def test_enable_and_disable_actions_are_audited(console, make_flow):
    flows = [make_flow(), make_flow(enabled=False)]
    url = reverse("admin:integrations_flow_changelist")

    console.post(url, {"action": "disable_flows", "_selected_action": [f.pk for f in flows]})
    console.post(url, {"action": "enable_flows", "_selected_action": [flows[1].pk]})

    assert list(Flow.objects.order_by("pk").values_list("enabled", flat=True)) == [False, True]
    assert sorted(AuditEntry.objects.values_list("action", "object_id")) == sorted(
        [("flow_disable", str(flows[0].pk)), ("flow_enable", str(flows[1].pk))]
    )


def test_a_mapping_version_is_read_only_but_can_be_restored(console, make_flow):
    flow = make_flow(mapping_spec={"fields": {"A": "a"}})
    console.post(change_url(flow), form_data(flow, mapping_spec=json.dumps({"fields": {"B": "b"}})))
    first = MappingVersion.objects.get(flow=flow, version=1)

    edit = console.post(reverse("admin:integrations_mappingversion_change", args=[first.pk]), {"comment": "x"})
    console.post(
        reverse("admin:integrations_mappingversion_changelist"), {"action": "restore", "_selected_action": [first.pk]}
    )

    assert edit.status_code == 403
    flow.refresh_from_db()
    assert (flow.mapping_version, flow.mapping_spec) == (3, {"fields": {"A": "a"}})
    assert MappingVersion.objects.get(flow=flow, version=3).comment == "restored version 1"


# --- value maps as CSV ----------------------------------------------------------------------


def upload(console: Client, value_map: ValueMap, text: str, **extra: Any):
    url = reverse("admin:integrations_valuemap_import_csv", args=[value_map.pk])
    return console.post(url, {"file": SimpleUploadedFile("map.csv", text.encode()), **extra})


def test_csv_import_adds_and_updates_entries(console, make_value_map):
    value_map = make_value_map("uom", {"pcs": "ST", "kg": "KG"})

    response = upload(console, value_map, "source_value,target_value\npcs,PC\nea,EA\n")

    assert response.status_code == 302
    assert value_map.as_dict() == {"pcs": "PC", "kg": "KG", "ea": "EA"}
    assert AuditEntry.objects.get(action="value_map_import").details == {"created": 1, "updated": 1, "deleted": 0}


def test_csv_import_with_replace_deletes_what_the_file_lacks(console, make_value_map):
    value_map = make_value_map("uom", {"pcs": "ST", "kg": "KG"})

    upload(console, value_map, "source_value,target_value\npcs,PC\n", replace="on")

    assert value_map.as_dict() == {"pcs": "PC"}


def test_csv_import_lists_every_bad_row_and_loads_nothing(console, make_value_map):
    value_map = make_value_map("uom", {})

    response = upload(console, value_map, "source_value,target_value\npcs,PC\n,EA\nkg\npcs,ST\n")

    assert response.context["problems"] == [
        "line 3: source_value is empty",
        "line 4: expected 2 columns (source_value,target_value), found 1",
        "line 5: source_value 'pcs' appears twice",
    ]
    assert not ValueMapEntry.objects.exists()


def test_csv_import_needs_the_header(console, make_value_map):
    value_map = make_value_map("uom", {})

    response = upload(console, value_map, "pcs,PC\n")

    assert response.context["problems"] == ["line 1: the header must be source_value,target_value, not pcs,PC"]


def test_csv_export_round_trips(console, make_value_map):
    value_map = make_value_map("uom", {"pcs": "PC", "a,b": 'say "x"'})

    response = console.get(reverse("admin:integrations_valuemap_export_csv", args=[value_map.pk]))
    ValueMapEntry.objects.all().delete()
    upload(console, value_map, response.content.decode())

    assert response["Content-Disposition"] == 'attachment; filename="uom.csv"'
    assert value_map.as_dict() == {"pcs": "PC", "a,b": 'say "x"'}


def test_value_map_list_shows_entry_counts(console, make_value_map):
    make_value_map("uom", {"pcs": "PC", "kg": "KG"})

    page = console.get(reverse("admin:integrations_valuemap_changelist"))

    assert page.status_code == 200
    assert [row.entry_total for row in page.context["cl"].result_list] == [2]


def test_flow_pages_render(console, make_flow):
    flow = make_flow(mapping_spec={"fields": {"A": "a"}})

    pages = [
        console.get(reverse("admin:integrations_flow_add")),
        console.get(reverse("admin:integrations_flow_changelist")),
        console.get(change_url(flow)),
        console.get(reverse("admin:integrations_mappingversion_changelist")),
    ]

    assert [page.status_code for page in pages] == [200, 200, 200, 200]
    assert b"mapping_comment" in pages[2].content


def test_a_mapping_version_page_shows_what_changed(console, make_flow):
    flow = make_flow(mapping_spec={"fields": {"A": "a"}})
    console.post(change_url(flow), form_data(flow, mapping_spec=json.dumps({"fields": {"A": "a", "B": "b"}})))
    second = MappingVersion.objects.get(flow=flow, version=2)

    page = console.get(reverse("admin:integrations_mappingversion_change", args=[second.pk]))

    assert page.status_code == 200
    assert "+    &quot;B&quot;: &quot;b&quot;" in page.content.decode()
