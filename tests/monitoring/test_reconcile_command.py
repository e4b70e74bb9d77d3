"""manage.py reconcile: counts per flow, and an exit code cron and CI can act on."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from sandbox.models import RecorderRecord
from tests.monitoring.conftest import deliver_order

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def three_orders(recorder_flow):
    for n in range(1, 4):
        deliver_order(recorder_flow, f"SO-{n}", Amount=100 + n, Customer="C-1", Date="2026-11-23", Company="DK01")
    return recorder_flow


def test_a_clean_flow_prints_its_counts_and_exits_zero(three_orders, capsys):
    call_command("reconcile", "--flow", three_orders.slug)
    out = capsys.readouterr().out
    assert f"{three_orders.slug}: done, 3 checked, 3 matched, 0 missing in target" in out
    assert "1 flow(s): 0 difference(s), 0 failed" in out


def test_a_record_changed_at_the_target_is_reported_with_exit_one(three_orders, capsys):
    RecorderRecord.objects.filter(entity="orders", key="SO-2").update(payload={"OrderNumber": "SO-2", "Amount": 1})
    with pytest.raises(SystemExit) as exited:
        call_command("reconcile", "--flow", three_orders.slug)
    assert exited.value.code == 1
    assert "1 different" in capsys.readouterr().out


def test_an_unknown_flow_is_a_clear_error():
    with pytest.raises(CommandError, match="no flow 'nope'"):
        call_command("reconcile", "--flow", "nope")
