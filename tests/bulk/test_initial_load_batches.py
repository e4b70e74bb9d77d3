"""Initial load in batches (issue 17, "Speed and memory"): one INSERT and one drain per page, not one per record."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from integrations.bulk import load
from integrations.models import LoadRun, Message, System
from integrations.pipeline import dispatch
from tests.bulk.conftest import seed_customers

pytest_plugins = ["tests.connectors.microsoft_support"]
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch, load_flow) -> list[tuple[str, tuple]]:
    """The tasks the pipeline queues (Celery's send_task, which we do not own), by name and arguments."""
    calls: list[tuple[str, tuple]] = []
    fake = SimpleNamespace(send_task=lambda name, args=(), **_: calls.append((name, tuple(args))))
    monkeypatch.setattr(dispatch, "current_app", fake)
    dispatch._redis().delete(dispatch.drain_key(load_flow.pk))  # none left by an earlier test
    return calls


def _page(flow, page_size: int) -> LoadRun:
    run = load.load_start(flow=flow, page_size=page_size)
    load.load_page(run_id=run.pk)
    run.refresh_from_db()
    return run


def test_a_page_is_stored_with_one_insert_and_a_batching_target_gets_one_drain(load_flow, sent):
    System.objects.filter(pk=load_flow.target_id).update(batch_size=1000)
    load_flow.refresh_from_db()
    seed_customers(30)

    with CaptureQueriesContext(connection) as queries:
        run = _page(load_flow, page_size=20)

    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "integrations_message"')]
    assert len(inserts) == 1
    assert (run.read, run.written, run.pages) == (20, 20, 1)
    drains = [args for name, args in sent if name == dispatch.DRAIN]
    assert drains == [(load_flow.pk,)]
    assert not [name for name, _ in sent if name == dispatch.PROCESS]


def test_a_target_without_batches_gets_one_task_per_new_message(load_flow, sent):
    System.objects.filter(pk=load_flow.target_id).update(batch_size=1)
    load_flow.refresh_from_db()
    seed_customers(7)

    run = _page(load_flow, page_size=10)

    queued = sorted(args[0] for name, args in sent if name == dispatch.PROCESS)
    assert queued == sorted(Message.objects.filter(flow=load_flow).values_list("pk", flat=True))
    assert run.written == 7


def test_a_record_already_stored_by_the_poller_is_not_written_or_queued_again(load_flow, sent):
    System.objects.filter(pk=load_flow.target_id).update(batch_size=1)
    load_flow.refresh_from_db()
    seed_customers(5)
    first = _page(load_flow, page_size=10)
    taken = Message.objects.get(flow=load_flow, source_record_key="dataAreaId='se01',CustomerAccount='C00002'")
    Message.objects.filter(flow=load_flow).exclude(pk=taken.pk).delete()  # the poller had taken only C00002
    sent.clear()

    run = _page(load_flow, page_size=10)

    assert (first.written, run.read, run.written) == (5, 5, 4)
    assert Message.objects.filter(flow=load_flow).count() == 5
    assert taken.pk not in [args[0] for name, args in sent if name == dispatch.PROCESS]
    assert len([name for name, _ in sent if name == dispatch.PROCESS]) == 4
