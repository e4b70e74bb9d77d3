"""Flow.options has a schema (integrations.flow_options): typed reads, refused typos, migrated rows, documented keys."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError

from integrations.errors import MappingError
from integrations.flow_options import (
    OPTION_KEYS,
    ChainRule,
    FieldCondition,
    FlowOptions,
    FlowOptionsError,
    LinkRule,
    options_problems,
    parse_options,
)
from integrations.ingress.routing import _event_types
from integrations.models import Flow, Message
from integrations.protocols.transport import DeliveryRequest
from integrations.scenarios.echo import message_skip_reason
from integrations.scenarios.install import templates_install
from integrations.scenarios.templates import TEMPLATES, TemplateError, raw

DOCS = Path(__file__).resolve().parents[2] / "docs" / "flow-options.md"
normalise = importlib.import_module("integrations.migrations._steps")


# --- the shipped configurations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_template_flow_has_options_that_fit_the_schema(name: str) -> None:
    # given the template's flows, tagged as the installer tags them
    for flow in raw(name)["flows"]:
        options = {**flow.get("options", {}), "template": name}
        # then each parses, with nothing to report
        assert options_problems(options) == [], flow["slug"]
        assert parse_options(options).template == name


def test_every_option_key_has_a_row_in_the_docs() -> None:
    table = DOCS.read_text()
    assert [key for key in OPTION_KEYS if f"| `{key}` |" not in table] == []


# --- typed reads ------------------------------------------------------------------------------------------------


def test_options_read_typed_with_the_readers_defaults() -> None:
    options = parse_options(
        {
            "chain": {"follows": "orders", "key": "SalesOrderNumber", "step": 2},
            "links": [{"follows": "accounts", "match": "source_key", "key": ["a.b"], "as": "customer"}],
            "only_when": {"statecode": 1, "CustomerAccount": {"not": "IC-DK01"}, "Kind": ["A", "B"]},
            "echo_of": "credit-out",
            "lines": {"field": "SalesOrderLines"},
            "fetch": [{"entity": "S/E", "key": {"Doc": "data.Doc"}, "as": "doc"}],
        }
    )

    assert options.chain == ChainRule(follows="orders", key=("SalesOrderNumber",), step=2)
    assert (options.chain.match, options.chain.company, options.chain.as_) == ("target_key", "dataAreaId", "order")
    assert options.links == (LinkRule(follows="accounts", match="source_key", key=("a.b",), as_="customer"),)
    assert options.only_when == {
        "statecode": FieldCondition((1,)),
        "CustomerAccount": FieldCondition(("IC-DK01",), negate=True),
        "Kind": FieldCondition(("A", "B")),
    }
    assert options.echo_of == ("credit-out",)
    assert (options.lines.entity, options.lines.key, options.lines.match) == (
        "SalesOrderLines",
        ("InventoryLotId",),
        "LineCreationSequenceNumber",
    )
    assert options.fetch[0].key == {"Doc": "data.Doc"}
    assert options.fetch[0].first is False


def test_no_options_are_the_defaults() -> None:
    options = parse_options({})

    assert options == FlowOptions()
    assert (options.chain, options.echo_of, options.links, options.only_when) == (None, None, (), {})
    assert parse_options({"echo_of": []}).echo_of == ()  # "no flow writes what this one reads"


# --- refused ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"only_wen": {"a": 1}}, "options: unknown key 'only_wen'; allowed: chain, links, fetch, only_when,"),
        ({"only_when": {"statecode": {"nto": [1]}}}, "options.only_when.statecode: unknown key 'nto'; allowed: not"),
        ({"chain": {"folows": "x", "key": "k"}}, "options.chain: unknown key 'folows'; allowed: follows, key, match"),
        ({"poll": {"entity": "E", "key": "K", "interval_seconds": 5}}, "options.poll: unknown key 'interval_seconds'"),
        ({"fetch": [{"entity": "E", "key": {"K": "k"}, "as": "x", "frist": True}]}, "options.fetch[0]: unknown key"),
    ],
)
def test_an_unknown_key_is_refused_naming_its_path_and_what_is_allowed(options: dict, problem: str) -> None:
    with pytest.raises(FlowOptionsError) as refused:
        parse_options(options)

    assert refused.value.problems[0].startswith(problem)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ("x", "options: expected an object with keys chain, links"),
        (
            {"chain": {"follows": "orders", "key": "k", "step": "2"}},
            "options.chain.step: expected a whole number, got '2'",
        ),
        ({"chain": {"key": "k"}}, "options.chain.follows: required"),
        ({"chain": {"follows": "o", "key": "k", "match": "key"}}, "options.chain.match: expected one of target_key"),
        ({"links": [{"follows": "a", "key": "k"}]}, "options.links[0].as: required"),
        ({"only_when": {"statecode": []}}, "options.only_when.statecode: expected a value"),
        ({"only_when": ["statecode"]}, "options.only_when: expected an object of field: value"),
        ({"echo_of": [1]}, "options.echo_of[0]: expected a non-empty string, got 1"),
        ({"event_types": "Created"}, "options.event_types: expected a list of strings, got 'Created'"),
        ({"webhook_messages": ["Upsert"]}, "options.webhook_messages[0]: expected one of Create, Update, Delete"),
        ({"poll": {"entity": "ReleasedProductsV2"}}, "options.poll.key: required"),
        ({"fetch": [{"entity": "E", "key": {"K": 1}, "as": "x"}]}, "options.fetch[0].key.K: expected a payload path"),
        ({"create_only": "yes"}, "options.create_only: expected true or false, got 'yes'"),
        ({"lines": {"field": ""}}, "options.lines.field: expected a non-empty string"),
    ],
)
def test_an_ill_typed_value_is_refused_naming_its_path_and_what_is_allowed(options: Any, problem: str) -> None:
    assert options_problems(options)[0].startswith(problem)


# --- Flow: parsed once, validated on save -----------------------------------------------------------------------


def test_flow_opts_are_parsed_once_and_again_when_the_options_change(make_flow) -> None:
    flow = make_flow(options={"only_when": {"statecode": 1}})

    first = flow.opts
    assert flow.opts is first
    flow.options["only_when"]["statecode"] = True  # edited in place: 1 == True, yet another option
    assert flow.opts.only_when == {"statecode": FieldCondition((True,))}
    flow.options = {"echo_of": []}
    assert flow.opts.echo_of == ()


def test_full_clean_refuses_an_unknown_option_naming_the_key(make_flow) -> None:
    flow = make_flow()
    flow.options = {"only_when": {"statecode": 1}, "echo_off": []}

    with pytest.raises(ValidationError) as refused:
        flow.full_clean()

    assert refused.value.message_dict["options"] == [
        "options: unknown key 'echo_off'; allowed: " + ", ".join(OPTION_KEYS)
    ]


def test_full_clean_refuses_an_ill_typed_option_naming_the_key(make_flow) -> None:
    flow = make_flow()
    flow.options = {"chain": {"follows": "orders", "key": ["SalesOrderNumber"], "optional": "no"}}

    with pytest.raises(ValidationError) as refused:
        flow.full_clean()

    assert refused.value.message_dict["options"] == ["options.chain.optional: expected true or false, got 'no'"]


def test_a_flow_stored_around_the_checks_fails_its_messages_naming_the_key(make_flow) -> None:
    # given a typo in only_when written straight to the database
    flow = make_flow()
    Flow.objects.filter(pk=flow.pk).update(options={"only_when": {"statecode": {"nto": 1}}})
    flow.refresh_from_db()
    message = Message.objects.create(flow=flow, idempotency_key="evt-1", payload_in={"statecode": 0})

    # then the event is not let through unfiltered: the pipeline's screening step fails, naming the key
    with pytest.raises(MappingError, match=rf"flow {flow.slug}: options.only_when.statecode: unknown key 'nto'"):
        message_skip_reason(message=message)


def test_ingress_routing_survives_a_misconfigured_flow(make_flow) -> None:
    flow = make_flow(options={"event_types": ["SalesOrderInvoicedBusinessEvent"]})
    assert _event_types(flow) == ["SalesOrderInvoicedBusinessEvent"]

    flow.options = {"event_types": "SalesOrderInvoicedBusinessEvent"}

    assert _event_types(flow) == []  # as before: a malformed list lists none


def test_template_with_a_misspelt_option_is_refused_naming_the_flow_and_key(db, monkeypatch) -> None:
    from integrations.scenarios.templates import intercompany

    first = intercompany.TEMPLATE["flows"][0]
    broken = {**intercompany.TEMPLATE, "flows": [{**first, "options": {**first["options"], "only_wen": {"a": 1}}}]}
    monkeypatch.setattr(intercompany, "TEMPLATE", broken)

    with pytest.raises(TemplateError, match=r"flow ic-dk01-po-to-se01-so: options: unknown key 'only_wen'"):
        templates_install(name="intercompany", base_url="http://hub.example:8000", sandbox=False)
    assert not Flow.objects.filter(slug="ic-dk01-po-to-se01-so").exists()


def test_delivery_request_takes_a_flows_stored_options() -> None:
    request = DeliveryRequest(
        entity="SalesOrderHeadersV2",
        operation="upsert",
        payload={},
        key={},
        idempotency_key="k",
        options={"lines": {"field": "SalesOrderLines"}, "create_only": True},
    )

    assert request.options.lines.entity == "SalesOrderLines"
    assert request.options.create_only is True


# --- the data migration -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "migrated"),
    [
        (None, {}),
        ("chain", {}),
        ([{"follows": "x"}], {}),
        ({"chain": {}, "poll": "", "lines": None, "echo_of": None, "only_when": {"a": 1}}, {"only_when": {"a": 1}}),
    ],
)
def test_migration_normalises_what_readers_took_as_no_option(stored: Any, migrated: dict) -> None:
    assert normalise.normalised_options(stored) == migrated
    assert options_problems(migrated) == []


def test_migration_leaves_a_valid_row_as_it_is() -> None:
    valid = {"echo_of": [], "deep_link": {}, "links": [], "only_when": {}}

    assert normalise.normalised_options(valid) is valid


def test_migration_rewrites_bad_rows_only(make_flow) -> None:
    bad, empty_rule, good = make_flow(), make_flow(), make_flow(options={"echo_of": ["x"]})
    Flow.objects.filter(pk=bad.pk).update(options="not an object")
    Flow.objects.filter(pk=empty_rule.pk).update(options={"chain": {}, "event_types": ["E"]})
    before = Flow.objects.get(pk=good.pk).updated_at

    normalise.normalise_flow_options(apps, None)

    assert Flow.objects.get(pk=bad.pk).options == {}
    assert Flow.objects.get(pk=empty_rule.pk).options == {"event_types": ["E"]}
    assert Flow.objects.values_list("options", "updated_at").get(pk=good.pk) == ({"echo_of": ["x"]}, before)
