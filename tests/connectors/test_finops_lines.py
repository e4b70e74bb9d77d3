"""Order headers with lines: F&O takes no deep insert, so the connector writes the header, then its lines
through their own entity, all in one change set (options.lines)."""

from __future__ import annotations

from typing import Any

import pytest

from integrations import errors
from integrations.models import System
from integrations.protocols.transport import DeliveryRequest
from integrations.systems import get_connector
from integrations.systems.finops.connector import FinOpsConnector
from sandbox.models import EmulatorRecord

pytest_plugins = ["tests.connectors.microsoft_support"]
pytestmark = pytest.mark.usefixtures("finops_items")  # the items the lines name are released products
LINES = {"lines": {"field": "SalesOrderLines", "entity": "SalesOrderLines"}}


def line(number: int, item: str, quantity: float = 1, price: float = 10.0) -> dict[str, Any]:
    return {
        "LineCreationSequenceNumber": number,
        "ItemNumber": item,
        "OrderedSalesQuantity": quantity,
        "SalesPrice": price,
    }


def order(number: str, lines: list[dict[str, Any]], *, exists: bool | None = None, **header: Any) -> DeliveryRequest:
    return DeliveryRequest(
        entity="SalesOrderHeadersV2",
        operation="upsert",
        payload={
            "OrderingCustomerAccountNumber": "C-1",
            "DefaultShippingSiteId": "1",  # the lines' site (a mandatory dimension)
            **header,
            "SalesOrderNumber": number,
            "SalesOrderLines": lines,
        },
        key={"SalesOrderNumber": number},
        idempotency_key=f"so-{number}",
        company="SE01",
        options=LINES,
        exists=exists,
    )


def connector_of(system: System) -> FinOpsConnector:
    connector = get_connector(system)
    assert isinstance(connector, FinOpsConnector)
    return connector


def stored_lines(number: str) -> list[tuple[int, str, float]]:
    rows = EmulatorRecord.objects.filter(
        emulator="finops", entity="SalesOrderLines", company="se01", deleted=False, data__SalesOrderNumber=number
    )
    return sorted(
        (r.data["LineCreationSequenceNumber"], r.data["ItemNumber"], r.data["OrderedSalesQuantity"]) for r in rows
    )


def header(number: str) -> dict[str, Any]:
    return EmulatorRecord.objects.get(emulator="finops", entity="SalesOrderHeadersV2", company="se01", key=number).data


def test_the_emulator_refuses_lines_inside_a_header_as_fo_does(finops_system: System) -> None:
    connector = connector_of(finops_system)
    embedded = DeliveryRequest(**{**order("SO-D1", [line(1, "A0001")]).__dict__, "options": {}})

    with pytest.raises(errors.RejectedError) as caught:
        connector.deliver(embedded)

    assert "deep insert" in caught.value.message.lower()
    assert not EmulatorRecord.objects.filter(entity="SalesOrderHeadersV2").exists()


def test_a_new_order_is_written_header_first_then_its_lines_in_one_change_set(finops_system: System) -> None:
    connector = connector_of(finops_system)
    sent: list[str] = []
    connector.session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request.url.split("/data/")[-1]))

    result = connector.deliver(order("SO-1", [line(1, "A0001", 2), line(2, "B0110", 5)], exists=False))

    assert result.created is True
    assert result.target_key == "dataAreaId='se01',SalesOrderNumber='SO-1'"
    assert sent == ["$batch"]  # one round trip
    assert "SalesOrderLines" not in header("SO-1")
    assert stored_lines("SO-1") == [(1, "A0001", 2), (2, "B0110", 5)]


def test_an_update_patches_changed_lines_adds_new_ones_and_deletes_those_gone(finops_system: System) -> None:
    connector = connector_of(finops_system)
    connector.deliver(order("SO-2", [line(1, "A0001", 1), line(2, "B0110", 1), line(3, "C0001", 1)], exists=False))
    lot_of_line_1 = EmulatorRecord.objects.get(
        emulator="finops", entity="SalesOrderLines", data__SalesOrderNumber="SO-2", data__LineCreationSequenceNumber=1
    ).key

    result = connector.deliver(
        order("SO-2", [line(1, "A0001", 7), line(2, "B0110", 1), line(4, "D0001", 3)], exists=True, CurrencyCode="SEK")
    )

    assert result.created is False
    assert header("SO-2")["CurrencyCode"] == "SEK"
    assert stored_lines("SO-2") == [(1, "A0001", 7), (2, "B0110", 1), (4, "D0001", 3)]
    line_1 = EmulatorRecord.objects.get(
        emulator="finops", entity="SalesOrderLines", data__SalesOrderNumber="SO-2", data__LineCreationSequenceNumber=1
    )
    assert line_1.key == lot_of_line_1  # the same line, changed in place


def test_a_redelivered_order_creates_no_second_header_or_line(finops_system: System) -> None:
    connector = connector_of(finops_system)
    lines = [line(1, "A0001", 2), line(2, "B0110", 5)]
    connector.deliver(order("SO-3", lines, exists=False))

    # Our response was lost: the pipeline has no link yet and tries create-first again.
    again = connector.deliver(order("SO-3", lines, exists=False))

    assert again.created is False
    assert EmulatorRecord.objects.filter(entity="SalesOrderHeadersV2", key="SO-3").count() == 1
    assert stored_lines("SO-3") == [(1, "A0001", 2), (2, "B0110", 5)]


def test_a_bad_line_writes_nothing_not_even_the_header(finops_system: System) -> None:
    connector = connector_of(finops_system)

    with pytest.raises(errors.RejectedError) as caught:
        connector.deliver(order("SO-4", [line(1, "A0001", 2), line(2, "B0110", -1)], exists=False))

    assert "OrderedSalesQuantity must be a positive number" in caught.value.message
    assert not EmulatorRecord.objects.filter(entity="SalesOrderHeadersV2", key="SO-4").exists()
    assert stored_lines("SO-4") == []


def test_a_line_without_its_match_field_is_refused_before_anything_is_sent(finops_system: System) -> None:
    connector = connector_of(finops_system)
    unnumbered = {"ItemNumber": "A0001", "OrderedSalesQuantity": 1}

    with pytest.raises(errors.RejectedError) as caught:
        connector.deliver(order("SO-5", [line(1, "A0001"), unnumbered]))

    assert "SalesOrderLines line 2 has no LineCreationSequenceNumber" in caught.value.message
    assert not EmulatorRecord.objects.filter(entity="SalesOrderHeadersV2").exists()


def test_a_batch_mixes_new_orders_in_change_sets_with_existing_ones_on_their_own(finops_system: System) -> None:
    connector = connector_of(finops_system)
    connector.deliver(order("SO-6", [line(1, "A0001", 1)], exists=False))

    results = connector.deliver_many(
        [
            order("SO-6", [line(1, "A0001", 4)], exists=True),
            order("SO-7", [line(1, "B0110", 2), line(2, "C0001", 1)], exists=False),
            order("SO-8", [line(1, "A0001", 0)], exists=False),  # a poison record: refused alone
            order("SO-9", [line(1, "D0001", 9)], exists=False),
        ]
    )

    assert [type(r).__name__ for r in results] == [
        "DeliveryResult",
        "DeliveryResult",
        "RejectedError",
        "DeliveryResult",
    ]
    assert stored_lines("SO-6") == [(1, "A0001", 4)]
    assert stored_lines("SO-7") == [(1, "B0110", 2), (2, "C0001", 1)]
    assert stored_lines("SO-9") == [(1, "D0001", 9)]
    assert not EmulatorRecord.objects.filter(entity="SalesOrderHeadersV2", key="SO-8").exists()


def test_a_batch_guess_of_new_for_an_existing_order_corrects_itself(finops_system: System) -> None:
    connector = connector_of(finops_system)
    connector.deliver(order("SO-10", [line(1, "A0001", 1), line(2, "B0110", 1)], exists=False))

    [result, other] = connector.deliver_many(
        [order("SO-10", [line(1, "A0001", 3)], exists=False), order("SO-11", [line(1, "A0001", 1)], exists=False)]
    )

    assert (result.created, other.created) == (False, True)
    assert stored_lines("SO-10") == [(1, "A0001", 3)]


def test_a_stale_etag_on_the_header_is_a_conflict_with_the_current_record(finops_system: System) -> None:
    connector = connector_of(finops_system)
    first = connector.deliver(order("SO-12", [line(1, "A0001", 1)], exists=False))
    connector.deliver(order("SO-12", [line(1, "A0001", 2)], exists=True, CustomersOrderReference="F&O edit"))

    stale = DeliveryRequest(**{**order("SO-12", [line(1, "A0001", 5)], exists=True).__dict__, "etag": first.etag})
    with pytest.raises(errors.ConflictError) as caught:
        connector.deliver(stale)

    assert caught.value.current["CustomersOrderReference"] == "F&O edit"
    assert stored_lines("SO-12") == [(1, "A0001", 2)]  # the change set changed nothing
