"""A batch's claims, renewals and outcomes are written for the batch, each row still fenced (issue 17)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from integrations.models import Attempt, Message, RecordLink
from integrations.pipeline import deliver
from integrations.pipeline.batch_outcomes import finish_delivered_many
from integrations.pipeline.delivery import Delivery
from integrations.protocols.transport import DeliveryResult
from integrations.scenarios import echo
from tests.integrations.test_pipeline import ingest, process

pytestmark = pytest.mark.django_db(transaction=True)
Status = Message.Status


def _message_updates(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "integrations_message"')]


def _claimed(messages: list[Message]) -> list[Delivery]:
    fresh = list(deliver._messages().filter(pk__in=[m.pk for m in messages]).order_by("pk"))
    return [Delivery.claim(fresh[0]), *Delivery.claim_many(fresh[1:])]


def test_a_batch_is_claimed_and_recorded_with_a_fixed_number_of_updates(recorder_flow):
    messages = [ingest(recorder_flow, f"SO-W{n}") for n in range(6)]

    with CaptureQueriesContext(connection) as queries:
        process(messages[0])

    # The message's own claim, one for its companions, one for the outcomes: not two per message.
    assert len(_message_updates(queries)) <= 4  # (a renewal before the send, should the box be slow)
    assert set(Message.objects.values_list("status", "attempts")) == {(Status.DELIVERED, 1)}
    assert Attempt.objects.filter(outcome=Attempt.Outcome.DELIVERED).count() == 6
    assert set(RecordLink.objects.values_list("source_key", flat=True)) == {f"SO-W{n}" for n in range(6)}
    assert set(Message.objects.values_list("target_record_key", flat=True)) == {f"orders/SO-W{n}" for n in range(6)}


def test_a_companion_another_worker_moved_on_is_not_claimed(recorder_flow):
    first, moved, free = (ingest(recorder_flow, f"SO-M{n}") for n in range(3))
    Message.objects.filter(pk=moved.pk).update(attempts=1)  # finished a try since it was read

    claimed = Delivery.claim_many([moved, free])

    assert [d.message.pk for d in claimed] == [free.pk]
    assert Message.objects.get(pk=moved.pk).status == Status.RECEIVED
    assert Message.objects.get(pk=free.pk).status == Status.DELIVERING


def test_preparing_a_long_batch_renews_the_claims_with_one_update(recorder_flow):
    claimed = _claimed([ingest(recorder_flow, f"SO-R{n}") for n in range(5)])
    for delivery in claimed:
        delivery.deadline -= 5  # as if preparing the batch had used part of the budget

    with CaptureQueriesContext(connection) as queries:
        ready = deliver._prepared(claimed)

    assert len(ready) == 5
    renewals = [sql for sql in _message_updates(queries) if "lease_expires_at" in sql]
    assert len(renewals) == 1
    assert all(not delivery.is_short() for delivery in ready)


def test_a_claim_lost_before_the_outcome_writes_nothing_and_the_rest_are_recorded(recorder_flow):
    claimed = _claimed([ingest(recorder_flow, f"SO-L{n}") for n in range(3)])
    lost = claimed[1]
    Message.objects.filter(pk=lost.message.pk).update(status=Status.RETRYING, lease_expires_at=None)  # the sweeper
    results = [DeliveryResult(target_key=f"orders/{d.message.source_record_key}", status_code=200) for d in claimed]

    finish_delivered_many(list(zip(claimed, results, strict=True)))

    statuses = dict(Message.objects.values_list("pk", "status"))
    assert statuses[lost.message.pk] == Status.RETRYING
    assert [statuses[d.message.pk] for d in (claimed[0], claimed[2])] == [Status.DELIVERED, Status.DELIVERED]
    assert Attempt.objects.filter(message=lost.message).exists() is False
    assert RecordLink.objects.filter(source_key=lost.message.source_record_key).exists() is False


def test_a_flow_that_nothing_writes_back_screens_no_echo_and_reads_nothing(recorder_flow, monkeypatch):
    """ "echo_of": [] says no flow writes what this one reads: no query, no key normal form, no payload merge."""
    recorder_flow.options = {**recorder_flow.options, "echo_of": []}
    recorder_flow.save()
    message = deliver._messages().get(pk=ingest(recorder_flow, "SO-E1").pk)
    work: list[str] = []
    for name in ("canonical_key", "message_payload"):
        original = getattr(echo, name)
        monkeypatch.setattr(echo, name, lambda *a, _n=name, _f=original, **k: work.append(_n) or _f(*a, **k))

    with CaptureQueriesContext(connection) as queries:
        reasons = (echo.echo_reason(message=message), echo.forward_write_in_flight(message=message))

    assert reasons == ("", "")
    assert (queries.captured_queries, work) == ([], [])
