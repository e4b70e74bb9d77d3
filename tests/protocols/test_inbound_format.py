"""InboundFormat defaults: a format states only what its prefix and routing field do not already say."""

from __future__ import annotations

from integrations import systems
from integrations.protocols.events import InboundEvent, InboundFormat


def _parse(document: object, *, headers: dict[str, str], endpoint: object) -> InboundEvent:
    return InboundEvent(payload={}, idempotency_key="1")


def test_the_url_name_follows_the_prefix_and_the_system_summary_the_routing_field() -> None:
    fmt = InboundFormat(prefix="events/acme", summary="Acme event", parse=_parse, entity_field="Topic")
    assert fmt.url_name == "events-acme"
    assert fmt.system_summary == "Acme event routed by Topic"


def test_stated_values_win_over_the_defaults() -> None:
    fmt = InboundFormat(
        prefix="webhooks/acme",
        summary="Acme webhook",
        parse=_parse,
        entity_field="Table",
        url_name="webhook-acme",
        system_summary="Acme webhook for every table",
    )
    assert (fmt.url_name, fmt.system_summary) == ("webhook-acme", "Acme webhook for every table")


def test_a_format_without_a_routing_field_has_no_system_summary() -> None:
    assert InboundFormat(prefix="ingest", summary="Any JSON", parse=_parse).system_summary == ""


def test_the_registered_formats_keep_their_route_names() -> None:
    names = {fmt.prefix: fmt.url_name for fmt in systems.inbound_formats()}
    assert names == {
        "events/finops": "events-finops",
        "webhooks/dataverse": "webhook-dataverse",
        "events/sap": "events-sap",
    }
