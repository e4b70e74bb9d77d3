"""Reconciliation of the shipped scenarios against the live sandbox: a fresh install with traffic is clean,
and a record changed by hand at the target is reported and repaired (headers and their lines)."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from integrations.models import Flow, Message
from integrations.polling.poll import flow_poll
from integrations.scenarios.install import seed_scenarios
from monitoring.models import Discrepancy
from monitoring.services.reconciliation import NOT_RECONCILABLE, reconciliation_run
from sandbox import dataverse
from sandbox.models import EmulatorRecord
from tests.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
SETTLED = ("delivered", "skipped", "dead", "failed", "discarded")
IC_ORDERS, P2C_ORDERS, O2C_ORDERS = "ic-dk01-po-to-se01-so", "p2c-orders-sales-to-fo", "o2c-orders-d365-to-s4"


@pytest.fixture
def traffic(live_server, start_worker):
    """The three scenario templates against the sandbox, as `make run` installs them, and generated traffic."""
    seed_scenarios(live_server.url)
    start_worker()
    call_command("generate_traffic", "--orders", "3", "--seed", "7", stdout=StringIO())
    # Beat polls every polled flow under `make run` (AX orders, F&O customers and products): so does the test,
    # or the records seeded at those sources would rightly be reported as never reached the hub.
    for flow in Flow.objects.filter(trigger=Flow.Trigger.POLL, enabled=True).order_by("pk"):
        flow_poll(flow=flow)
    for slug in (IC_ORDERS, P2C_ORDERS, O2C_ORDERS):
        wait_until(
            lambda slug=slug: Message.objects.filter(flow__slug=slug, status="delivered").count() >= 3, sweep=True
        )
    wait_until(lambda: not Message.objects.exclude(status__in=SETTLED).exists(), sweep=True)
    yield
    dataverse.reset()  # no webhook of this test may still be on its way when the next one starts


def report(flow: Flow) -> str:
    return "; ".join(
        f"{d.kind} {d.source_key} {d.detail} {d.fields} {d.source_values} != {d.target_values}"
        for d in Discrepancy.objects.filter(run__flow=flow)
    )


def test_a_fresh_install_with_traffic_reconciles_clean(traffic, capsys):
    # Every shipped flow carried its records: the F&O products' mixed-case units ("Pcs") once failed here.
    failed = Message.objects.filter(status__in=("failed", "dead")).values_list("flow__slug", "source_record_key")
    assert not failed.exists(), list(failed)
    call_command("reconcile")  # every enabled flow; exits 1 on any difference, 2 on a failed run

    out = capsys.readouterr().out
    assert "0 difference(s), 0 failed" in out, out + "\n".join(report(flow) for flow in Flow.objects.all())
    for slug in (IC_ORDERS, P2C_ORDERS, O2C_ORDERS):  # header + lines documents, each compared
        assert f"{slug}: done, 3 checked, 3 matched" in out
    action = Flow.objects.filter(target_operation=Flow.Operation.ACTION, enabled=True).first()
    if action is not None:
        assert f"{action.slug}: not reconcilable: action flow" in out
        assert reconciliation_run(flow=action).totals[NOT_RECONCILABLE]["reason"] == "action flow"


def test_a_line_changed_by_hand_at_the_target_is_reported_and_repair_fixes_it(traffic):
    flows = {slug: Flow.objects.get(slug=slug) for slug in (IC_ORDERS, O2C_ORDERS)}
    # An F&O user changes a line's quantity of an intercompany order; an S/4 user an item's quantity.
    fo_line = EmulatorRecord.objects.filter(emulator="finops", entity="SalesOrderLines").order_by("pk").first()
    fo_line.data["OrderedSalesQuantity"] = fo_line.data["OrderedSalesQuantity"] + 100
    fo_line.save()
    s4_item = EmulatorRecord.objects.filter(emulator="s4hana", entity__endswith="A_SalesOrderItem").first()
    s4_item.data["RequestedQuantity"] = str(Decimal(s4_item.data["RequestedQuantity"]) + 5)
    s4_item.save()
    changed_fo = [f for f in ("ic", "p2c") if fo_line.data["SalesOrderNumber"].startswith("DK01-") == (f == "ic")]
    fo_flow = flows[IC_ORDERS] if changed_fo == ["ic"] else Flow.objects.get(slug=P2C_ORDERS)

    runs = {flow.slug: reconciliation_run(flow=flow) for flow in (fo_flow, flows[O2C_ORDERS])}

    assert {slug: (run.different, run.matched) for slug, run in runs.items()} == {
        fo_flow.slug: (1, 2),
        O2C_ORDERS: (1, 2),
    }, report(fo_flow) + report(flows[O2C_ORDERS])
    assert Discrepancy.objects.get(run=runs[fo_flow.slug]).fields == ["SalesOrderLines"]
    assert Discrepancy.objects.get(run=runs[O2C_ORDERS]).fields == ["to_Item"]

    for flow in (fo_flow, flows[O2C_ORDERS]):
        reconciliation_run(flow=flow, repair=True)
    wait_until(
        lambda: Message.objects.filter(idempotency_key__contains="#repair-", status="delivered").count() == 2,
        sweep=True,
    )
    for flow in (fo_flow, flows[O2C_ORDERS]):
        again = reconciliation_run(flow=flow)
        assert (again.different, again.matched) == (0, 3), report(flow)
