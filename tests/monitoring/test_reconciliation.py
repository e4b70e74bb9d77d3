"""Reconciliation against the sandbox recorder: injected differences are all found, and repair fixes them."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django_celery_beat.models import PeriodicTask

from integrations.models import AuditEntry, Message
from integrations.pipeline import deliver as pipeline
from monitoring.models import Discrepancy, ReconciliationRun, ReconciliationSchedule
from monitoring.services import reconciliation
from sandbox.models import RecorderRecord
from tests.monitoring.conftest import deliver_order

pytestmark = pytest.mark.django_db(transaction=True)
Kind = Discrepancy.Kind


@pytest.fixture
def five_orders(recorder_flow):
    for n in range(1, 6):
        deliver_order(recorder_flow, f"SO-{n}", Amount=100 + n, Customer="C-1", Date="2026-11-23", Company="DK01")
    return recorder_flow


def inject_differences() -> None:
    RecorderRecord.objects.filter(entity="orders", key="SO-1").delete()
    changed = RecorderRecord.objects.get(entity="orders", key="SO-2")
    changed.payload = {**changed.payload, "Amount": 999}
    changed.save()
    changed = RecorderRecord.objects.get(entity="orders", key="SO-3")
    changed.payload = {**changed.payload, "Customer": "C-9", "Date": "2026-11-24"}
    changed.save()


def test_a_clean_flow_matches_everywhere(five_orders):
    run = reconciliation.reconciliation_run(flow=five_orders)

    assert (run.status, run.checked, run.matched, run.discrepancies_count) == ("done", 5, 5, 0)


def test_every_injected_difference_is_found_with_its_fields(five_orders):
    inject_differences()

    run = reconciliation.reconciliation_run(flow=five_orders)

    assert (run.checked, run.matched, run.missing_in_target, run.different, run.missing_in_source) == (5, 2, 1, 2, 0)
    found = {d.source_key: d for d in run.discrepancies.all()}
    assert found["SO-1"].kind == Kind.MISSING_IN_TARGET
    assert (found["SO-2"].kind, found["SO-2"].fields) == (Kind.DIFFERENT, ["Amount"])
    assert found["SO-2"].source_values == {"Amount": 102}
    assert found["SO-2"].target_values == {"Amount": 999}
    assert found["SO-3"].fields == ["Customer", "Date"]
    assert set(found) == {"SO-1", "SO-2", "SO-3"}


def test_repair_redelivers_with_a_derived_key_and_the_next_run_matches(five_orders, django_user_model):
    inject_differences()
    run = reconciliation.reconciliation_run(flow=five_orders)
    alice = django_user_model.objects.create_user("alice")

    queued = reconciliation.discrepancies_repair(discrepancies=run.discrepancies.all(), actor=alice, reason="fix")
    again = reconciliation.discrepancies_repair(discrepancies=run.discrepancies.all(), actor=alice, reason="fix")
    repairs = list(Message.objects.filter(idempotency_key__contains="#repair-"))
    for message in repairs:
        pipeline.message_process(message_id=message.pk)

    assert (queued, again, len(repairs)) == (3, 3, 3)  # the second repair finds the same messages
    assert all(m.force_overwrite for m in repairs)
    assert {m.replay_of.source_record_key for m in repairs} == {"SO-1", "SO-2", "SO-3"}
    assert set(Message.objects.filter(pk__in=[m.pk for m in repairs]).values_list("status", flat=True)) == {"delivered"}
    assert RecorderRecord.objects.filter(entity="orders").count() == 5  # upserts, no second record
    assert RecorderRecord.objects.get(key="SO-2").payload["Amount"] == 102
    assert AuditEntry.objects.filter(action="reconcile_repair", actor_name="alice").count() == 3
    after = reconciliation.reconciliation_run(flow=five_orders)
    assert (after.checked, after.matched, after.discrepancies_count) == (5, 5, 0)


def test_auto_repair_on_the_schedule_queues_the_repairs(five_orders):
    reconciliation.schedule_save(schedule=ReconciliationSchedule(flow=five_orders, auto_repair=True))
    inject_differences()

    run = reconciliation.reconciliation_run(flow=five_orders)

    assert run.discrepancies.filter(repair_message__isnull=False).count() == 3


def test_business_totals_per_day_and_company_show_the_gap(five_orders):
    reconciliation.schedule_save(
        schedule=ReconciliationSchedule(
            flow=five_orders, totals={"amount": "Amount", "date": "Date", "company": "Company"}
        )
    )
    inject_differences()

    run = reconciliation.reconciliation_run(flow=five_orders)

    rows = run.totals["rows"]
    assert rows == [
        # SO-1 is missing (0 at target), SO-2 is 999 instead of 102: 515 at source, 101 less + 897 more at target.
        {"day": "2026-11-23", "company": "DK01", "source": "515", "target": "1311", "difference": "-796"}
    ]
    assert run.totals["mismatched"] == 1


def test_fetch_mode_reads_the_source_and_finds_records_deleted_there(five_orders):
    five_orders.source = five_orders.target  # the recorder also plays the source system
    five_orders.save()
    for n in range(1, 6):
        RecorderRecord.objects.create(
            entity="src", key=f"SO-{n}", payload=RecorderRecord.objects.get(entity="orders", key=f"SO-{n}").payload
        )
    RecorderRecord.objects.filter(entity="src", key="SO-4").delete()
    source_side = RecorderRecord.objects.get(entity="src", key="SO-5")
    source_side.payload = {**source_side.payload, "Amount": 5}
    source_side.save()
    reconciliation.schedule_save(
        schedule=ReconciliationSchedule(flow=five_orders, source_mode="fetch", source_entity="src")
    )

    run = reconciliation.reconciliation_run(flow=five_orders)

    assert (run.matched, run.missing_in_source, run.different) == (3, 1, 1)
    assert run.discrepancies.get(kind=Kind.MISSING_IN_SOURCE).source_key == "SO-4"
    assert run.discrepancies.get(kind=Kind.DIFFERENT).fields == ["Amount"]


def test_an_unreachable_target_is_counted_as_errors_not_as_matches(five_orders):
    from sandbox.common.faults import set_faults

    set_faults("recorder", down=True)
    run = reconciliation.reconciliation_run(flow=five_orders)

    assert (run.checked, run.matched, run.errors) == (5, 0, 5)
    assert "503" in run.discrepancies.first().detail


def test_schedule_save_keeps_a_beat_periodic_task_in_step(make_flow):
    flow = make_flow()
    schedule = reconciliation.schedule_save(schedule=ReconciliationSchedule(flow=flow, every_minutes=15))
    task = PeriodicTask.objects.get(pk=schedule.periodic_task_id)
    assert (task.task, task.args, task.interval.every, task.crontab) == (
        "monitoring.tasks.reconcile_flow",
        f"[{flow.pk}]",
        15,
        None,
    )

    schedule.cron = "30 2 * * 1-5"
    schedule.enabled = False
    reconciliation.schedule_save(schedule=schedule)
    task.refresh_from_db()
    assert (task.interval, task.crontab.hour, task.crontab.day_of_week, task.enabled) == (None, "2", "1-5", False)

    reconciliation.schedule_delete(schedule=schedule)
    assert PeriodicTask.objects.filter(pk=task.pk).exists() is False


def test_a_bad_cron_expression_is_refused_naming_the_field(make_flow):
    with pytest.raises(ValidationError, match="cron: expected 5 fields"):
        reconciliation.schedule_save(schedule=ReconciliationSchedule(flow=make_flow(), cron="every day"))


def test_the_beat_task_runs_the_flow_by_id(five_orders):
    from monitoring import tasks

    tasks.reconcile_flow(five_orders.pk)
    tasks.reconcile_flow(987654)  # a deleted flow is not an error

    assert ReconciliationRun.objects.filter(flow=five_orders, status="done").count() == 1
