"""F&O change feeds: the rows a change-tracked data project's export holds become messages, once each."""

from __future__ import annotations

import uuid

import pytest

from integrations.models import AxPollCursor, Flow, Message
from integrations.polling.poll import flow_poll, poll_by_id, poll_flow_ids
from integrations.protocols.transport import DeliveryRequest
from integrations.scenarios.install import templates_install
from integrations.systems import get_connector
from sandbox.common.faults import clear_faults, set_faults

pytestmark = pytest.mark.django_db(transaction=True)
PRODUCTS = "p2c-products-fo-to-sales"


@pytest.fixture
def products(live_server):
    templates_install(name="prospect_to_cash", base_url=live_server.url)
    yield Flow.objects.select_related("source", "company_link").get(slug=PRODUCTS)
    clear_faults()


def fo_product(flow: Flow, item: str, price: float) -> None:
    get_connector(flow.source).deliver(
        DeliveryRequest(
            entity="ReleasedProductsV2",
            operation="upsert",
            payload={"ProductName": f"Item {item}", "SalesPrice": price},
            key={"ItemNumber": item},
            idempotency_key=str(uuid.uuid4()),
            company="SE01",
        )
    )


def test_new_and_changed_products_are_ingested_once_each(products):
    fo_product(products, "P-1", 10.0)
    fo_product(products, "P-2", 20.0)

    first = flow_poll(flow=products)
    again = flow_poll(flow=products)  # nothing changed since: the incremental export is empty
    fo_product(products, "P-1", 11.0)
    changed = flow_poll(flow=products)

    assert (first.messages_created, again.messages_created, changed.messages_created) == (2, 0, 1)
    keys = list(Message.objects.filter(flow=products).values_list("source_record_key", flat=True))
    assert sorted(set(keys)) == ["dataAreaId='se01',ItemNumber='P-1'", "dataAreaId='se01',ItemNumber='P-2'"]
    cursor = AxPollCursor.objects.get(flow=products)
    assert cursor.changed_since is not None
    assert cursor.delta_link == ""  # no export left pending


def test_a_flow_without_its_data_project_is_refused_with_what_to_set(products):
    Flow.objects.filter(pk=products.pk).update(options={**products.options, "package_project": ""})
    products.refresh_from_db()

    with pytest.raises(ValueError, match="options.package_project"):
        flow_poll(flow=products)


def test_fo_outage_leaves_the_cursor_for_the_next_poll(products):
    fo_product(products, "P-3", 5.0)
    set_faults("finops", down=True)

    failed = flow_poll(flow=products)
    set_faults("finops", down=False)
    recovered = flow_poll(flow=products)

    assert failed.messages_created == 0
    assert "down" in failed.error or "503" in failed.error
    assert recovered.messages_created == 1
    assert flow_poll(flow=products).messages_created == 0  # not read a second time


def test_every_enabled_fo_poll_flow_is_listed_for_beat(products):
    assert set(Flow.objects.filter(pk__in=poll_flow_ids(), source__kind="finops").values_list("slug", flat=True)) == {
        PRODUCTS,
        "p2c-customers-fo-to-sales",
    }


def test_a_flow_disabled_since_beat_queued_it_is_not_polled(products):

    fo_product(products, "P-4", 1.0)
    Flow.objects.filter(pk=products.pk).update(enabled=False)

    assert poll_by_id(flow_id=products.pk) is None
    assert not Message.objects.exists()


def test_a_poll_holds_no_transaction_while_its_source_answers_and_one_poll_at_a_time(products, monkeypatch):
    from django.db import connection

    from integrations.polling.cursors import cursor_lease
    from integrations.systems.finops.connector import FinOpsConnector

    fo_product(products, "P-4", 7.0)
    seen = []
    read_changes = FinOpsConnector.read_changes

    def watched(self, *args, **kwargs):
        # On SQLite an open write transaction here would lock out the very emulator being asked.
        seen.append(connection.in_atomic_block)
        with cursor_lease(products) as other:  # a second worker's poll of the same flow, meanwhile
            seen.append(other)
        return read_changes(self, *args, **kwargs)

    monkeypatch.setattr(FinOpsConnector, "read_changes", watched)
    result = flow_poll(flow=products)

    assert seen == [False, None]
    assert result.messages_created == 1
    cursor = AxPollCursor.objects.get(flow=products)
    assert cursor.polling_until is None  # given back
    assert flow_poll(flow=products).skipped is False


def test_a_lease_left_by_a_poll_that_died_runs_out(products):
    from datetime import timedelta

    from django.utils import timezone

    fo_product(products, "P-5", 9.0)
    AxPollCursor.objects.create(flow=products, polling_until=timezone.now() + timedelta(minutes=5))
    assert flow_poll(flow=products).skipped is True

    AxPollCursor.objects.filter(flow=products).update(polling_until=timezone.now() - timedelta(seconds=1))

    assert flow_poll(flow=products).messages_created == 1
