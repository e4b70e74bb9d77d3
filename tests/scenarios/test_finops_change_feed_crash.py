"""A poll of F&O's change-tracked export that dies half way: nothing lost, nothing stored twice.

An incremental export moves F&O's change tracking on ("Enable change tracking for entities"): its rows never
come in a later export. So the poll keeps the export's execution id in its cursor until every row is stored,
and a poll after a crash reads that execution's package again ("Data management package REST API":
GetExecutionSummaryStatus, GetExportedPackageUrl) instead of exporting anew.
"""

from __future__ import annotations

import pytest

from integrations.models import AxPollCursor, Flow, Message
from integrations.polling import poll
from integrations.polling.poll import flow_poll
from integrations.scenarios.install import templates_install
from integrations.systems.finops.packages import DataPackages
from tests.scenarios.test_feeds import PRODUCTS, fo_product

pytestmark = pytest.mark.django_db(transaction=True)


class Killed(BaseException):
    """The worker dies (kill -9): no handler of ours sees it."""


@pytest.fixture
def products(live_server):
    templates_install(name="prospect_to_cash", base_url=live_server.url)
    return Flow.objects.select_related("source", "company_link").get(slug=PRODUCTS)


def stored(flow: Flow) -> list[tuple[str, float]]:
    return sorted(
        (m.source_record_key, m.payload_in["SalesPrice"]) for m in Message.objects.filter(flow=flow).order_by("pk")
    )


def die_once(monkeypatch, owner: object, name: str, after: int = 0) -> None:
    """The call owner.name dies the first time, after `after` calls went through."""
    real = getattr(owner, name)
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == after + 1:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, dying)


def test_a_crash_while_storing_the_rows_reads_the_same_package_again(products, monkeypatch):
    fo_product(products, "P-1", 10.0)
    fo_product(products, "P-2", 20.0)
    die_once(monkeypatch, poll, "message_ingest", after=1)  # P-1 stored, then the worker dies

    with pytest.raises(Killed):
        flow_poll(flow=products)
    pending = AxPollCursor.objects.get(flow=products).delta_link
    fo_product(products, "P-3", 30.0)  # a change while the hub was down: in the next export, not this one
    redelivered = flow_poll(flow=products)
    later = flow_poll(flow=products)

    assert pending.startswith("export:")
    assert redelivered.messages_created == 1  # P-2; P-1 is the same row again, stored once
    assert later.messages_created == 1  # P-3
    assert stored(products) == [
        ("dataAreaId='se01',ItemNumber='P-1'", 10.0),
        ("dataAreaId='se01',ItemNumber='P-2'", 20.0),
        ("dataAreaId='se01',ItemNumber='P-3'", 30.0),
    ]
    executions = [m.headers["finops_execution"] for m in Message.objects.filter(flow=products).order_by("pk")]
    assert executions[0] == executions[1] == pending.removeprefix("export:") != executions[2]
    assert AxPollCursor.objects.get(flow=products).delta_link == ""


@pytest.mark.parametrize("crash_in", ["export", "package_rows"])
def test_a_crash_before_or_after_fo_exported_loses_no_change(products, monkeypatch, crash_in):
    """Before: F&O never ran the export (its id is unknown there), so it is run under that id. After: F&O's
    change tracking has moved on, so only that execution's package still holds the rows."""
    fo_product(products, "P-1", 10.0)
    die_once(monkeypatch, DataPackages, crash_in)

    with pytest.raises(Killed):
        flow_poll(flow=products)
    first = AxPollCursor.objects.get(flow=products).delta_link
    again = flow_poll(flow=products)

    assert first.startswith("export:")
    assert again.messages_created == 1
    assert stored(products) == [("dataAreaId='se01',ItemNumber='P-1'", 10.0)]
    assert Message.objects.get(flow=products).headers["finops_execution"] == first.removeprefix("export:")
    assert flow_poll(flow=products).messages_created == 0


def test_a_failed_export_is_reported_and_the_next_poll_exports_anew(products):
    from sandbox.finops import packages

    fo_product(products, "P-1", 10.0)
    packages.EmulatorRecord.objects.filter(emulator="finops", entity=packages.PROJECT).delete()  # project gone

    failed = flow_poll(flow=products)
    packages.data_project("ICB-P2C-ReleasedProducts", entities=["ReleasedProductsV2"], incremental=True)
    recovered = flow_poll(flow=products)

    assert "ICB-P2C-ReleasedProducts" in failed.error
    assert AxPollCursor.objects.get(flow=products).last_error == ""
    assert recovered.messages_created == 1
