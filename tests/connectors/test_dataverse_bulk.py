"""DataverseConnector.deliver_many with bulk operation messages, against the Dataverse emulator over TLS."""

from __future__ import annotations

from typing import Any

from integrations import errors
from integrations.models import System
from integrations.protocols.transport import DeliveryRequest
from integrations.systems import get_connector
from integrations.systems.dataverse.connector import DataverseConnector
from sandbox.dataverse.store import live

pytest_plugins = ["tests.connectors.microsoft_support"]


def account(number: str, name: str = "Contoso", **fields: Any) -> DeliveryRequest:
    return DeliveryRequest(
        entity="accounts",
        operation="upsert",
        payload={"name": name, **fields},
        key={"accountnumber": number},
        idempotency_key=f"acc-{number}",
    )


def connector_with_log(system: System) -> tuple[DataverseConnector, list[str]]:
    connector = get_connector(system)
    assert isinstance(connector, DataverseConnector)
    sent: list[str] = []
    connector.session.hooks["response"].append(lambda r, *a, **k: sent.append(f"{r.request.method} {r.request.url}"))
    return connector, sent


def test_a_batch_of_upserts_goes_as_one_upsert_multiple(dataverse_system: System) -> None:
    """Use bulk operation messages: UpsertMultiple writes a table's records in one request."""
    dataverse_system.batch_size = 500
    connector, sent = connector_with_log(dataverse_system)

    results = connector.deliver_many([account(f"M{n:03d}", name=f"Bulk {n}") for n in range(120)])

    assert [s for s in sent if s.startswith("POST")] == [
        f"POST {connector.api}/accounts/Microsoft.Dynamics.CRM.UpsertMultiple"
    ]
    assert all(not isinstance(r, errors.ConnectorError) for r in results)
    rows = {r.data["accountnumber"]: r.key for r in live("accounts")}
    assert [r.target_key for r in results] == [rows[f"M{n:03d}"] for n in range(120)]
    assert len([s for s in sent if s.startswith("GET")]) == 3  # the ids read back, 50 keys a query


def test_a_batch_of_keyless_creates_goes_as_one_create_multiple_with_our_ids(dataverse_system: System) -> None:
    """Use bulk operation messages: CreateMultiple answers the ids; a keyless create names its row."""
    connector, sent = connector_with_log(dataverse_system)
    requests_ = [
        DeliveryRequest(
            entity="accounts",
            operation="create",
            payload={"name": f"New {n}"},
            key={},
            idempotency_key=f"new-{n}",
            flow="bulk-flow",
        )
        for n in range(3)
    ]

    results = connector.deliver_many(requests_)

    assert [s for s in sent if s.startswith("POST")] == [
        f"POST {connector.api}/accounts/Microsoft.Dynamics.CRM.CreateMultiple"
    ]
    assert [r.target_key for r in results] == [r.client_id for r in requests_]
    assert all(r.created for r in results)


def test_a_refused_bulk_request_is_sent_again_so_only_the_bad_record_fails(dataverse_system: System) -> None:
    """Use bulk operation messages: one bad target fails the whole message; the connector isolates it."""
    connector, sent = connector_with_log(dataverse_system)

    results = connector.deliver_many([account("F1"), account("F2", name="x" * 200), account("F3")])

    assert [type(r).__name__ for r in results] == ["DeliveryResult", "RejectedError", "DeliveryResult"]
    assert "exceeded the maximum allowed length of '160'" in results[1].message
    assert [s.split(" ")[1].rsplit("/", 1)[1] for s in sent if s.startswith("POST")] == [
        "Microsoft.Dynamics.CRM.UpsertMultiple",
        "$batch",
    ]
    assert sorted(live("accounts").values_list("data__accountnumber", flat=True)) == ["F1", "F3"]


def test_a_table_without_bulk_messages_goes_through_batch(dataverse_system: System) -> None:
    """Use bulk operation messages: not every table takes them; settings["bulk_tables"] names those that do."""
    dataverse_system.settings["bulk_tables"] = ["contacts"]
    connector, sent = connector_with_log(dataverse_system)

    connector.deliver_many([account("T1"), account("T2")])

    assert [s.rsplit("/", 1)[1] for s in sent if s.startswith("POST")] == ["$batch"]
