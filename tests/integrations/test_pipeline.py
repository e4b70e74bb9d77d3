"""The pipeline against the sandbox recorder over real HTTP, one service call at a time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from integrations.models import Attempt, Flow, Message, RecordLink
from integrations.pipeline import deliver as pipeline
from integrations.pipeline import sweep
from integrations.pipeline.ingest import message_ingest
from sandbox.common.faults import set_faults
from sandbox.models import RecorderRecord, RecorderWrite

pytestmark = pytest.mark.django_db(transaction=True)
Status = Message.Status


def ingest(flow: Flow, number: str = "SO-1", key: str | None = None, version: int | None = None, **payload):
    message, _ = message_ingest(
        flow=flow,
        payload={"OrderNumber": number, **payload},
        idempotency_key=key or f"evt-{number}-{version}",
        source_record_key=number,
        source_version=version,
    )
    return message


def process(message: Message) -> Message:
    pipeline.message_process(message_id=message.pk)
    message.refresh_from_db()
    return message


def make_due(message: Message) -> None:
    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())


def test_message_is_transformed_delivered_and_cross_referenced(recorder_flow):
    message = process(ingest(recorder_flow, "SO-1", Amount="10.00"))

    assert message.status == Status.DELIVERED
    assert message.payload_out == {"OrderNumber": "SO-1", "Amount": "10.00"}
    assert message.target_record_key == "orders/SO-1"
    assert message.attempt_set.get().outcome == Attempt.Outcome.DELIVERED
    link = RecordLink.objects.get(flow=recorder_flow, source_key="SO-1")
    assert (link.target_key, link.target_etag) == ("orders/SO-1", 'W/"1"')
    assert RecorderRecord.objects.get(key="SO-1").payload == {"OrderNumber": "SO-1", "Amount": "10.00"}


def test_transient_failure_is_retried_at_the_scheduled_time_then_delivered(recorder_flow):
    recorder_flow.retry_policy = {"max_attempts": 5, "backoff": {"1": 30}, "jitter": 0}
    recorder_flow.save()
    set_faults("recorder", down=True)

    message = process(ingest(recorder_flow))

    assert message.status == Status.RETRYING
    assert 29 <= (message.next_attempt_at - timezone.now()).total_seconds() <= 31
    set_faults("recorder", down=False)
    # Not due yet: a task arriving early (a duplicate, a sweep) does nothing.
    assert process(message).status == Status.RETRYING
    assert sweep.messages_sweep()["requeued"] == 0

    make_due(message)
    assert sweep.messages_sweep()["requeued"] == 1
    message = process(message)

    assert message.status == Status.DELIVERED
    outcomes = list(message.attempt_set.values_list("number", "outcome", "response_status"))
    assert outcomes == [(1, "retry", 503), (2, "delivered", 201)]


def test_validation_failure_is_not_retried(recorder_flow):
    message = process(ingest(recorder_flow, __reject__="CustomerAccount 'X' does not exist"))

    assert message.status == Status.FAILED
    assert message.next_attempt_at is None
    assert message.last_error_class == "errors.RejectedError"
    assert "CustomerAccount 'X' does not exist" in message.last_error
    attempt = message.attempt_set.get()
    assert (attempt.outcome, attempt.response_status) == (Attempt.Outcome.FAILED, 400)
    assert sweep.messages_sweep()["requeued"] == 0


def test_throttled_delivery_waits_at_least_retry_after(recorder_flow):
    set_faults("recorder", throttle_rate=1.0, retry_after_seconds=42)

    message = process(ingest(recorder_flow))

    assert message.status == Status.RETRYING
    assert message.last_error_class == "errors.ThrottledError"
    # The flow's backoff says 0 s; the server said 42 s, and the server wins.
    assert (message.next_attempt_at - timezone.now()).total_seconds() >= 41


def test_message_is_dead_after_the_attempt_limit(recorder_flow):
    set_faults("recorder", error_rate=1.0)
    message = ingest(recorder_flow)

    for _ in range(3):
        make_due(message)
        message = process(message)

    assert message.status == Status.DEAD
    assert message.next_attempt_at is None
    assert list(message.attempt_set.values_list("outcome", flat=True)) == ["retry", "retry", "dead"]


def test_older_event_never_overwrites_a_newer_state(recorder_flow):
    newer = process(ingest(recorder_flow, "SO-7", version=2, Quantity=5))
    older = process(ingest(recorder_flow, "SO-7", version=1, Quantity=3))

    assert newer.status == Status.DELIVERED
    assert older.status == Status.SKIPPED
    assert "older than version 2" in older.last_error
    assert RecorderRecord.objects.get(key="SO-7").payload["Quantity"] == 5
    assert RecordLink.objects.get(source_key="SO-7").source_version == 2


def test_unchanged_content_is_not_written_again(recorder_flow):
    process(ingest(recorder_flow, "SO-8", version=1, Quantity=5))
    again = process(ingest(recorder_flow, "SO-8", version=2, Quantity=5))

    assert again.status == Status.SKIPPED
    assert again.last_error.startswith("Unchanged")
    assert RecorderRecord.objects.get(key="SO-8").writes == 1


def test_lost_response_after_target_commit_is_redelivered_without_a_second_write(recorder_flow):
    recorder_flow.target.timeout_seconds = 0.5
    recorder_flow.target.save()
    set_faults("recorder", slow_after_commit_ms=1500)

    message = process(ingest(recorder_flow, "SO-9"))
    assert message.status == Status.RETRYING
    assert message.last_error_class == "errors.TransientError"

    set_faults("recorder", slow_after_commit_ms=0)
    make_due(message)
    message = process(message)

    assert message.status == Status.DELIVERED
    record = RecorderRecord.objects.get(key="SO-9")
    assert record.writes == 1  # the repeat carried the same idempotency key: no second write
    assert RecorderWrite.objects.filter(record=record).count() == 2


def test_a_second_claim_of_the_same_message_gets_nothing(recorder_flow):
    message = ingest(recorder_flow)

    first = pipeline.Delivery.claim(message)
    second = pipeline.Delivery.claim(message)

    assert first is not None
    assert second is None


def test_conflict_is_parked_when_the_target_changed_since_the_last_sync(recorder_flow):
    recorder_flow.conflict_policy = Flow.ConflictPolicy.PARK
    recorder_flow.save()
    process(ingest(recorder_flow, "SO-10", version=1, Quantity=1))
    record = RecorderRecord.objects.get(key="SO-10")
    record.payload = {"OrderNumber": "SO-10", "Quantity": 99}  # an edit made in the target system
    record.version = 2
    record.save()

    message = process(ingest(recorder_flow, "SO-10", version=2, Quantity=2))

    assert message.status == Status.CONFLICT
    assert message.attempt_set.get().response_status == 412
    assert RecorderRecord.objects.get(key="SO-10").payload["Quantity"] == 99


def test_target_master_keeps_the_target_version_on_conflict(recorder_flow):
    recorder_flow.master = Flow.Master.TARGET
    recorder_flow.save()
    process(ingest(recorder_flow, "SO-11", version=1, Quantity=1))
    RecorderRecord.objects.filter(key="SO-11").update(version=2)

    message = process(ingest(recorder_flow, "SO-11", version=2, Quantity=2))

    assert message.status == Status.SKIPPED
    assert "owns the record" in message.last_error


def test_source_master_overwrites_without_if_match(recorder_flow):
    process(ingest(recorder_flow, "SO-12", version=1, Quantity=1))
    RecorderRecord.objects.filter(key="SO-12").update(version=5)

    message = process(ingest(recorder_flow, "SO-12", version=2, Quantity=2))

    assert message.status == Status.DELIVERED
    assert RecorderRecord.objects.get(key="SO-12").payload["Quantity"] == 2


def test_unexpected_crash_is_retried_then_dead_without_blocking_others(recorder_flow, monkeypatch):
    poison = ingest(recorder_flow, "POISON")
    healthy = ingest(recorder_flow, "SO-13")
    original = pipeline.get_connector

    class Exploding:
        batch_capable = False

        def deliver(self, request):
            if request.payload["OrderNumber"] == "POISON":
                raise KeyError("boom")
            return original(recorder_flow.target).deliver(request)

    monkeypatch.setattr(pipeline, "get_connector", lambda system: Exploding())
    for _ in range(3):
        make_due(poison)
        poison = process(poison)
    healthy = process(healthy)

    assert poison.status == Status.DEAD
    assert poison.last_error_class == "builtins.KeyError"
    assert healthy.status == Status.DELIVERED


def test_disabled_flow_holds_its_messages(recorder_flow):
    recorder_flow.enabled = False
    recorder_flow.save()

    message = process(ingest(recorder_flow))

    assert message.status == Status.RECEIVED
    Message.objects.filter(pk=message.pk).update(queued_at=timezone.now() - timedelta(hours=1))
    assert sweep.messages_sweep()["requeued"] == 0


def test_sweeper_releases_a_claim_past_its_lease(recorder_flow):
    message = ingest(recorder_flow)
    pipeline.Delivery.claim(message)
    Message.objects.filter(pk=message.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    result = sweep.messages_sweep()
    message.refresh_from_db()

    assert result["released"] == 1
    assert message.status == Status.RETRYING
    assert message.attempt_set.get().outcome == Attempt.Outcome.INTERRUPTED
    assert process(message).status == Status.DELIVERED


def test_a_released_claim_of_a_drained_flow_queues_a_new_drain(recorder_flow, monkeypatch):
    """The lost worker's drain task is unacknowledged for an hour: the rest of the flow must not wait for it."""
    recorder_flow.target.batch_size = 4
    recorder_flow.target.save()
    waiting = [ingest(recorder_flow, f"SO-W{n}") for n in range(6)]  # queued_at set: the sweeper leaves them
    pipeline.Delivery.claim(waiting[0])
    Message.objects.filter(pk=waiting[0].pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    drains: list[int] = []
    monkeypatch.setattr(sweep.dispatch, "queue_drain_task", lambda *, flow_id: drains.append(flow_id) or True)

    assert sweep.messages_sweep()["released"] == 1
    assert drains == [recorder_flow.pk]

    pipeline.flow_drain(flow_id=recorder_flow.pk)  # what the queued drain does
    assert set(Message.objects.exclude(pk=waiting[0].pk).values_list("status", flat=True)) == {Status.DELIVERED}


def test_sweeper_requeues_a_message_whose_task_was_lost(recorder_flow, settings):
    settings.ICBRIDGE_REQUEUE_AFTER_SECONDS = 60
    message = ingest(recorder_flow)
    assert sweep.messages_sweep()["requeued"] == 0  # queued just now: leave it to its task

    Message.objects.filter(pk=message.pk).update(queued_at=timezone.now() - timedelta(seconds=61))

    assert sweep.messages_sweep()["requeued"] == 1
    assert sweep.messages_sweep()["requeued"] == 0  # queued again just now


def test_record_busy_elsewhere_defers_the_message_without_counting_an_attempt(recorder_flow):
    import hashlib

    import psycopg

    message = ingest(recorder_flow, "SO-14")
    digest = hashlib.blake2b(f"{recorder_flow.pk}:SO-14".encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)
    db = connection_url()
    with psycopg.connect(db, autocommit=True) as other_worker:
        other_worker.execute("SELECT pg_advisory_lock(%s)", [key])
        message = process(message)

        assert message.status == Status.TRANSFORMED
        assert message.attempts == 0
        assert message.attempt_set.exists() is False
    make_due(message)
    assert process(message).status == Status.DELIVERED


def connection_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    return f"postgresql://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def test_due_messages_of_a_flow_travel_in_one_batch(recorder_flow):
    messages = [ingest(recorder_flow, f"SO-B{n}") for n in range(5)]

    process(messages[0])

    assert Message.objects.filter(status=Status.DELIVERED).count() == 5
    summaries = set(Attempt.objects.values_list("request_summary", flat=True))
    assert len(summaries) == 1
    assert summaries.pop().endswith("/batch (5 records)")
    # The companions' own tasks find nothing left to do.
    assert process(messages[3]).attempt_set.count() == 1


def test_a_rejected_record_fails_alone_in_its_batch(recorder_flow):
    bad = ingest(recorder_flow, "SO-BAD", __reject__="Item 'X' is blocked")
    good = ingest(recorder_flow, "SO-GOOD")

    process(bad)

    bad.refresh_from_db()
    good.refresh_from_db()
    assert bad.status == Status.FAILED
    assert "Item 'X' is blocked" in bad.last_error
    assert good.status == Status.DELIVERED


def test_batch_size_one_sends_records_one_by_one(recorder_flow):
    recorder_flow.target.batch_size = 1
    recorder_flow.target.save()
    first = ingest(recorder_flow, "SO-S1")
    second = ingest(recorder_flow, "SO-S2")

    process(first)

    second.refresh_from_db()
    assert second.status == Status.RECEIVED
    assert first.attempt_set.get().request_summary.startswith("PUT ")


def test_two_events_of_one_record_in_one_batch_go_in_order(recorder_flow):
    older = ingest(recorder_flow, "SO-20", version=1, Quantity=1)
    newer = ingest(recorder_flow, "SO-20", version=2, Quantity=2)

    process(older)
    newer.refresh_from_db()
    assert newer.status == Status.TRANSFORMED  # waited for the older one to finish
    make_due(newer)
    newer = process(newer)

    assert newer.status == Status.DELIVERED
    assert RecorderRecord.objects.get(key="SO-20").payload["Quantity"] == 2


def test_truncated_event_is_completed_from_the_source_before_mapping(recorder_flow, recorder_system, make_system):
    source = make_system(name="Source", slug="source", base_url=recorder_system.base_url)
    recorder_flow.source = source
    recorder_flow.save()
    RecorderRecord.objects.create(entity="orders", key="SO-30", payload={"OrderNumber": "SO-30", "Notes": "x" * 300})
    message, _ = message_ingest(
        flow=recorder_flow,
        payload={"event": "Update", "entity": "orders", "id": "SO-30"},
        idempotency_key="evt-30",
        source_record_key="SO-30",
        headers={"truncated": True},
    )

    message = process(message)

    assert message.status == Status.DELIVERED
    assert message.payload_fetched["attributes"]["Notes"] == "x" * 300
    assert message.headers["completed_from_source"] is True
    assert "attributes" not in message.payload_in  # the event stays as received


def test_event_the_flow_does_not_carry_is_skipped_with_the_reason(recorder_flow):
    recorder_flow.options = {"only_when": {"Status": "Confirmed"}}
    recorder_flow.save()

    skipped = process(ingest(recorder_flow, "SO-31", Status="Draft"))
    carried = process(ingest(recorder_flow, "SO-32", Status="Confirmed"))

    assert skipped.status == Status.SKIPPED
    assert "Status is 'Draft'" in skipped.last_error
    assert carried.status == Status.DELIVERED


def test_a_misspelt_filter_stored_around_the_checks_fails_the_message_instead_of_carrying_it(recorder_flow):
    # given a typo in only_when written straight to the database (the console and the model refuse it)
    Flow.objects.filter(pk=recorder_flow.pk).update(options={"only_when": {"Status": {"nto": "Draft"}}})
    recorder_flow.refresh_from_db()

    failed = process(ingest(recorder_flow, "SO-33", Status="Draft"))

    assert failed.status == Status.FAILED
    assert "options.only_when.Status: unknown key 'nto'; allowed: not" in failed.last_error
    assert not RecorderWrite.objects.filter(idempotency_key=failed.idempotency_key).exists()


def test_a_broker_refusal_pauses_only_ingest_and_the_sweeper_still_sends(recorder_flow, monkeypatch):
    """Ingest leaves its messages to the sweeper while the broker pause lasts (each try would wait out the
    broker's connection timeout); the sweeper, which marks what it sends as queued, still really sends."""
    from kombu.exceptions import OperationalError

    from integrations.pipeline import dispatch

    sent: list[tuple] = []
    answers = iter([OperationalError("broker down")])

    def send_task(name: str, args=(), **kwargs) -> None:
        sent.append((name, tuple(args)))
        if (failure := next(answers, None)) is not None:
            raise failure

    monkeypatch.setattr(dispatch.current_app, "send_task", send_task)
    first = ingest(recorder_flow, "SO-1")  # its task refused: the pause starts
    second = ingest(recorder_flow, "SO-2")  # paused: not tried, left to the sweeper

    assert dispatch.broker_paused()
    assert len(sent) == 1
    assert Message.objects.filter(pk__in=[first.pk, second.pk], queued_at__isnull=True).count() == 2
    sweep.messages_sweep()
    assert sorted(args[0] for name, args in sent[1:]) == sorted([first.pk, second.pk])  # the sweeper sent both
