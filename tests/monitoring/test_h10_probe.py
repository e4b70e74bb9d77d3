from __future__ import annotations
import pytest
from io import StringIO
from django.core.management import call_command
from integrations.models import Flow, Message
from integrations.polling.poll import flow_poll
from integrations.scenarios.install import seed_scenarios
from monitoring.services.reconciliation import reconciliation_run
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

def test_probe(live_server, start_worker):
    seed_scenarios(live_server.url)
    start_worker("probe", concurrency=2)
    call_command("generate_traffic", "--orders", "3", "--seed", "1", stdout=StringIO())
    for flow in Flow.objects.filter(source__kind="ax2012"):
        flow_poll(flow=flow)
    def settled():
        return not Message.objects.exclude(status__in=["delivered", "dead", "failed", "skipped", "discarded"]).exists()
    try:
        wait_until(settled, timeout=90, sweep=True)
    except AssertionError as e:
        print('NOT SETTLED', e)
    for m in Message.objects.filter(status='retrying'):
        print('RETRYING', m.flow.slug, m.last_error_class, m.last_error[:300])
    print({(m.flow.slug, m.status, m.last_error_class) for m in Message.objects.select_related("flow")})
    for flow in Flow.objects.order_by("slug"):
        run = reconciliation_run(flow=flow)
        print(flow.slug, flow.source.kind, "->", flow.target.kind, run.status, run.error, run.checked, run.matched, run.different, run.missing_in_target, run.errors)
        for d in run.discrepancies.all()[:3]:
            print("   ", d.kind, d.source_key, d.target_key, d.detail, d.fields, d.source_values, d.target_values)
