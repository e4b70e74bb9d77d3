"""Pipeline safety (issue 14): each test reproduces one failure outside probes found, then asserts the promise.

accepted = delivered; no message is ever in flight twice; no record is written twice at a target that
does not deduplicate (the recorder with dedupe off: SANDBOX_RECORDER_DEDUPE = False, every call writes);
a message that cannot be delivered ends failed or dead, never retried past max_attempts; an operator can
discard a message in any state that is not final. Real Celery workers, the live sandbox, bounded in time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from celery import current_app
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.utils import timezone

from integrations.models import Attempt, Flow, InboundEndpoint, Message, RecordLink, ValueMap, ValueMapEntry
from integrations.pipeline import deliver, dispatch, operator
from integrations.pipeline.ingest import message_ingest
from integrations.pipeline.sweep import messages_sweep
from integrations.protocols import governor
from monitoring.services import retention
from sandbox.common.faults import clear_faults, set_faults
from sandbox.models import RecorderRecord, RecorderWrite
from tests.conftest import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
Status = Message.Status
PATIENT = {"max_attempts": 100, "backoff": {"1": 1, "4": 2}, "jitter": 0.2}
DELIVERY_QUEUE = django_settings.CELERY_TASK_DEFAULT_QUEUE
SWEEP_QUEUE = django_settings.ICBRIDGE_SWEEP_QUEUE
THREE_TRIES = {"max_attempts": 3, "backoff": {"1": 0}, "jitter": 0}


@pytest.fixture(autouse=True)
def _no_dedupe_at_the_recorder(settings):
    """The recorder as a target with no dedupe of its own: a repeated Idempotency-Key is written again."""
    settings.SANDBOX_RECORDER_DEDUPE = False


@pytest.fixture
def flow(recorder_flow: Flow) -> Flow:
    recorder_flow.retry_policy = PATIENT
    recorder_flow.save()
    recorder_flow.target.timeout_seconds = 2
    recorder_flow.target.save()
    return recorder_flow


def order(flow: Flow, n: int, prefix: str = "SO", **fields) -> Message:
    message, _ = message_ingest(
        flow=flow,
        payload={"OrderNumber": f"{prefix}-{n}", "Qty": 2, "Price": 3, "Code": "7", "Width": 6, **fields},
        idempotency_key=f"evt-{prefix}-{n}",
        source_record_key=f"{prefix}-{n}",
        source_version=1,
    )
    return message


def settled() -> bool:
    return not Message.objects.filter(status__in=(*Message.DELIVERABLE, Status.DELIVERING)).exists()


def assert_each_written_once(keys: list[str]) -> None:
    """Every record reached the target exactly once: with dedupe off, a second send would be a second write."""
    records = RecorderRecord.objects.filter(key__in=keys)
    assert records.count() == len(keys)
    assert sorted(set(records.values_list("writes", flat=True))) == [1]
    assert RecorderWrite.objects.filter(record__key__in=keys).count() == len(keys)


def assert_each_message_written_once() -> None:
    """Every delivered message reached the target's write exactly once, and nothing else did.

    With dedupe off a second send of one message is a second applied write under its Idempotency-Key.
    """
    delivered = set(Message.objects.filter(status=Status.DELIVERED).values_list("idempotency_key", flat=True))
    writes = Counter(RecorderWrite.objects.filter(applied=True).values_list("idempotency_key", flat=True))
    assert set(writes) == delivered
    assert set(writes.values()) <= {1}, writes.most_common(3)


def assert_never_in_flight_twice(*, workers_lost: bool = False) -> None:
    """No claim was taken from a live worker, and no two attempts of one message overlap in time."""
    if not workers_lost:
        assert Attempt.objects.filter(error_class="pipeline.WorkerLost").exists() is False
    for message in Message.objects.all():
        attempts = list(message.attempt_set.order_by("started_at"))
        for before, after in zip(attempts, attempts[1:], strict=False):
            assert before.started_at + timedelta(milliseconds=before.duration_ms) <= after.started_at, message


# --- 1. a poison message in preparation -----------------------------------------------------------


def test_poison_in_preparation_fails_or_dies_and_its_batch_goes_on(start_worker, flow, recorder_system, make_system):
    """A 4,000-digit quantity, a pad width from the payload, a fetch key that is an object, an unreachable source.

    Before: the error escaped preparation, the claim stayed delivering, the sweeper re-queued it past
    max_attempts (attempt 17 of 5) and the batch it was claimed with waited for its lease.
    """
    flow.retry_policy = THREE_TRIES
    flow.mapping_spec = {
        "fields": {
            "OrderNumber": {"path": "OrderNumber"},
            "Total": {"expr": "Qty * Price"},
            "Code": {"expr": "pad_left(Code, Width, '0')"},
        }
    }
    flow.save()
    flow.target.batch_size = 5  # poison and healthy messages claimed together
    flow.target.save()
    fetching = Flow.objects.create(
        name="Fetching",
        slug="fetching",
        entity="salesorder",
        source=recorder_system,
        target=recorder_system,
        target_entity="orders",
        target_key_fields=["OrderNumber"],
        retry_policy=THREE_TRIES,
        options={"fetch": [{"entity": "orders", "key": {"OrderNumber": "Ref"}, "as": "ref"}]},
    )
    unreachable = Flow.objects.create(
        name="Unreachable source",
        slug="unreachable",
        entity="salesorder",
        source=make_system(base_url="http://127.0.0.1:9/sandbox/recorder", timeout_seconds=1),
        target=recorder_system,
        target_entity="orders",
        target_key_fields=["OrderNumber"],
        retry_policy=THREE_TRIES,
        options={"fetch": [{"entity": "orders", "key": {"OrderNumber": "Ref"}, "as": "ref"}]},
    )
    start_worker(concurrency=2)
    huge = order(flow, 0, prefix="POISON", Qty=int("9" * 4000))  # as a poller stores it: no webhook bound
    wide = order(flow, 1, prefix="POISON", Width=10**12)
    healthy = [order(flow, n) for n in range(20)]
    shapeless = order(fetching, 2, prefix="POISON", Ref={"not": ["a key"]})
    lost_source = order(unreachable, 3, prefix="POISON", Ref="SO-1")

    wait_until(settled, timeout=60, sweep=True)

    assert Message.objects.filter(pk__in=[m.pk for m in healthy], status=Status.DELIVERED).count() == 20
    assert_each_written_once([f"SO-{n}" for n in range(20)])
    assert_each_message_written_once()
    assert_never_in_flight_twice()
    for poison, field in ((huge, "Total"), (wide, "Code"), (shapeless, "fetch")):
        poison.refresh_from_db()
        assert poison.status == Status.FAILED, poison.last_error
        assert poison.last_error_class == "errors.MappingError"
        assert field in poison.last_error
        assert list(poison.attempt_set.values_list("outcome", flat=True)) == [Attempt.Outcome.FAILED]
    lost_source.refresh_from_db()
    assert lost_source.status == Status.DEAD
    assert lost_source.attempts == 3
    assert sorted(lost_source.attempt_set.values_list("number", flat=True)) == [1, 2, 3]
    assert RecorderRecord.objects.filter(key__startswith="POISON").exists() is False


def test_a_message_that_loses_its_worker_every_time_ends_dead(flow):
    """The sweeper counts a lost claim as an attempt and stops at max_attempts (seen before: attempt 17 of 5)."""
    flow.retry_policy = THREE_TRIES
    flow.save()
    message = order(flow, 1)
    for _ in range(5):
        message.refresh_from_db()
        if message.status not in Message.DELIVERABLE:
            break
        Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
        message.refresh_from_db()
        assert deliver.Delivery.claim(message) is not None
        Message.objects.filter(pk=message.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        messages_sweep()

    message.refresh_from_db()
    assert message.status == Status.DEAD
    assert message.attempts == 3
    assert list(message.attempt_set.order_by("number").values_list("number", "outcome")) == [
        (1, Attempt.Outcome.INTERRUPTED),
        (2, Attempt.Outcome.INTERRUPTED),
        (3, Attempt.Outcome.DEAD),
    ]


def test_an_operator_can_discard_a_message_in_any_state_that_is_not_final(flow, admin_client):
    states = [s for s in Status.values if s not in Message.TERMINAL]
    messages = {state: order(flow, n) for n, state in enumerate(states)}
    for state, message in messages.items():
        Message.objects.filter(pk=message.pk).update(
            status=state, lease_expires_at=timezone.now() + timedelta(hours=1) if state == Status.DELIVERING else None
        )
    final = order(flow, 99)
    Message.objects.filter(pk=final.pk).update(status=Status.DELIVERED)

    for state, message in messages.items():
        response = admin_client.post(
            f"/api/messages/{message.pk}/discard", {"reason": f"stuck {state}"}, content_type="application/json"
        )
        assert response.status_code == 200, (state, response.content)
        message.refresh_from_db()
        assert (message.status, message.lease_expires_at) == (Status.DISCARDED, None)
    refused = admin_client.post(f"/api/messages/{final.pk}/discard", {"reason": "x"}, content_type="application/json")
    assert refused.status_code == 409

    # A worker that still held the delivering one writes nothing when its send returns.
    held = messages[Status.DELIVERING]
    late = deliver.Delivery(message=held, lease=held.lease_expires_at or timezone.now())
    assert late._write(status=Status.DELIVERED, outcome=Attempt.Outcome.DELIVERED) is False


# --- 2. replay of a message with a long key -------------------------------------------------------


@pytest.mark.parametrize("length", [247, 250, 255])
def test_replaying_a_message_with_a_long_key_sends_the_edited_copy(start_worker, flow, admin_client, length):
    """Before: "#replay-1" was cut off again, the copy was the original, discarded "as itself", edit dropped."""
    key = "K" * length
    original, _ = message_ingest(
        flow=flow, payload={"OrderNumber": "SO-LONG", "Qty": 1}, idempotency_key=key, source_record_key="SO-LONG"
    )
    Message.objects.filter(pk=original.pk).update(status=Status.FAILED)

    first = admin_client.post(
        f"/api/messages/{original.pk}/replay",
        {"reason": "fixed the quantity", "payload": {"OrderNumber": "SO-LONG", "Qty": 5}},
        content_type="application/json",
    )
    second = admin_client.post(
        f"/api/messages/{original.pk}/replay", {"reason": "once more"}, content_type="application/json"
    )

    assert (first.status_code, second.status_code) == (201, 201)
    copies = [Message.objects.get(pk=response.json()["id"]) for response in (first, second)]
    keys = {original.idempotency_key, *(copy.idempotency_key for copy in copies)}
    assert len(keys) == 3  # three messages, three keys
    assert all(len(k) <= 255 for k in keys)
    assert [copy.replay_of_id for copy in copies] == [original.pk, original.pk]
    assert copies[0].payload_in == {"OrderNumber": "SO-LONG", "Qty": 5}
    original.refresh_from_db()
    assert original.status == Status.DISCARDED
    assert original.last_error == f"Replayed as message {copies[0].pk}"

    Message.objects.filter(pk=copies[1].pk).update(status=Status.DISCARDED)  # only the edited copy goes out
    start_worker()
    wait_until(settled, timeout=30, sweep=True)
    copies[0].refresh_from_db()
    assert copies[0].status == Status.DELIVERED
    assert RecorderRecord.objects.get(key="SO-LONG").payload == {"OrderNumber": "SO-LONG", "Qty": 5}
    assert_each_written_once(["SO-LONG"])
    assert_each_message_written_once()
    assert_never_in_flight_twice()


# --- 3. the same message sent twice at once ---------------------------------------------------------


def test_a_slow_target_never_gets_a_message_twice_from_the_sweeper(start_worker, flow):
    """Deliveries wait for the target's one slot, then a slow answer: together longer than the old lease.

    Before: the lease (timeout + margin) ran out while a send was still waiting or in flight, the sweeper
    gave the message to another worker, and a target without dedupe wrote it again (up to 5 times).
    Now the lease covers the governor's wait and the call, every call ends by the delivery's deadline,
    and the real sweeper (beat every second, on its own queue) finds no live claim to take.
    """
    target = flow.target
    target.timeout_seconds = 4
    target.max_concurrency = 1  # one call at a time at the target: every other send waits for the slot
    target.batch_size = 1
    target.save()
    set_faults("recorder", latency_ms=3000)  # within the timeout; with the wait for the slot, beyond timeout + margin
    tuning = {"ICBRIDGE_THROTTLE_MAX_WAIT_SECONDS": "4", "ICBRIDGE_SWEEP_SECONDS": "1"}
    start_worker("w1", concurrency=2, queues=DELIVERY_QUEUE, **tuning)
    start_worker("w2", concurrency=2, queues=DELIVERY_QUEUE, **tuning)
    sweeper = start_worker("sweeper", queues=SWEEP_QUEUE, beat=True, **tuning)
    messages = [order(flow, n) for n in range(7)]  # 4 slots, one target slot: most wait longer than the old lease

    wait_until(lambda: Message.objects.filter(status=Status.DELIVERED).count() == 7, timeout=200)

    assert_each_written_once([m.source_record_key for m in messages])
    assert_each_message_written_once()
    assert_never_in_flight_twice()
    assert RecordLink.objects.count() == 7
    assert sweeper.log_path.read_text().count("integrations.tasks.sweep_messages") >= 5  # it did sweep, all along


def test_a_target_answering_beyond_the_lease_is_cut_off_in_time_and_delivered_once(start_worker, flow, settings):
    """Every call ends by its deadline, before the lease: retries never overlap, the sweeper releases nothing."""
    settings.SANDBOX_RECORDER_DEDUPE = True  # a timed-out write may land: the target's own dedupe makes it once
    flow.target.timeout_seconds = 1
    flow.target.batch_size = 1
    flow.target.save()
    set_faults("recorder", latency_ms=6000)  # beyond the lease (1 s wait + 1 s timeout + 1 s margin)
    tuning = {"ICBRIDGE_THROTTLE_MAX_WAIT_SECONDS": "1", "ICBRIDGE_SWEEP_SECONDS": "1"}
    start_worker("w1", concurrency=2, queues=DELIVERY_QUEUE, **tuning)
    start_worker("sweeper", queues=SWEEP_QUEUE, beat=True, **tuning)
    messages = [order(flow, n) for n in range(4)]
    wait_until(lambda: Attempt.objects.filter(outcome=Attempt.Outcome.RETRY).count() >= 8, timeout=60)

    attempts = Attempt.objects.filter(outcome=Attempt.Outcome.RETRY)
    assert max(attempts.values_list("duration_ms", flat=True)) < 1900  # 1 s, not the 6 s the target takes
    assert_never_in_flight_twice()

    set_faults("recorder", latency_ms=0)
    wait_until(lambda: Message.objects.filter(status=Status.DELIVERED).count() == 4, timeout=60)
    time.sleep(7)  # the abandoned calls' handlers finish at the target meanwhile
    assert sorted(set(RecorderRecord.objects.values_list("writes", flat=True))) == [1]
    assert RecorderRecord.objects.count() == len(messages)
    assert_each_message_written_once()  # applied writes: the target's dedupe turned the repeats away
    assert_never_in_flight_twice()


# --- 5. Retry-After without a cap -----------------------------------------------------------------


@pytest.mark.parametrize("retry_after", ["1e12", "ten years"])
def test_an_absurd_retry_after_is_capped_and_the_message_still_ends_dead(start_worker, flow, make_flow, retry_after):
    """Retry-After 1e12 crashed every attempt (WorkerLost); ten years parked messages until 2036."""
    if retry_after == "ten years":
        retry_after = format_datetime(timezone.now() + timedelta(days=3650), usegmt=True)
    flow.retry_policy = THREE_TRIES
    flow.save()
    flow.target.batch_size = 1
    flow.target.save()
    others = make_flow(target=flow.target, retry_policy=PATIENT)  # the same target: its pause holds them too
    start_worker(concurrency=2, ICBRIDGE_RETRY_AFTER_MAX_SECONDS="2")
    poison = order(flow, 1, prefix="THROTTLED", __throttle__=retry_after)
    healthy = [order(others, n) for n in range(5)]

    wait_until(settled, timeout=90, sweep=True)

    poison.refresh_from_db()
    assert poison.status == Status.DEAD
    attempts = list(poison.attempt_set.order_by("number"))
    assert [a.number for a in attempts] == [1, 2, 3]
    assert {a.error_class for a in attempts} == {"errors.ThrottledError"}
    assert 429 in {a.response_status for a in attempts}
    for before, after in zip(attempts, attempts[1:], strict=False):
        gap = (after.started_at - before.started_at).total_seconds()
        assert gap < 30  # not parked for a decade
        if before.response_status == 429:
            assert gap >= 1.9  # the wait it asked for, capped at 2 s, honoured
    assert Attempt.objects.filter(error_class="pipeline.WorkerLost").exists() is False  # no crash
    assert Message.objects.filter(pk__in=[m.pk for m in healthy], status=Status.DELIVERED).count() == 5
    assert_each_written_once([m.source_record_key for m in healthy])
    assert_each_message_written_once()
    assert_never_in_flight_twice()


# --- 6. a future-dated event ------------------------------------------------------------------------


def test_a_future_dated_event_is_refused_and_the_record_keeps_moving(start_worker, flow, client):
    """An event of 9999-12-31 was taken as the newest version for ever: every later event was skipped as stale."""
    InboundEndpoint.objects.create(
        flow=flow,
        auth_type=InboundEndpoint.AuthType.NONE,
        record_key_pointer="/OrderNumber",
        version_pointer="/ModifiedOn",
    )
    start_worker()

    def post(event_id: str, modified: str, qty: int):
        body = {"id": event_id, "OrderNumber": "SO-T", "ModifiedOn": modified, "Qty": qty}
        return client.post(f"/api/ingest/{flow.slug}", body, content_type="application/json")

    now = timezone.now()
    assert post("e1", now.isoformat(), 1).status_code == 202
    wait_until(settled, timeout=30, sweep=True)
    refused = post("e2", "9999-12-31T00:00:00Z", 2)
    later = post("e3", (now + timedelta(seconds=1)).isoformat(), 3)

    assert refused.status_code == 400
    assert refused.json()["field"] == "/ModifiedOn"
    assert "clock skew" in refused.json()["error"]
    assert later.status_code == 202
    assert Message.objects.filter(idempotency_key="e2").exists() is False
    wait_until(settled, timeout=30, sweep=True)
    assert set(Message.objects.values_list("status", flat=True)) == {Status.DELIVERED}  # nothing skipped as stale
    assert RecorderRecord.objects.get(key="SO-T").payload["Qty"] == 3
    assert_each_message_written_once()  # two events of the record, each written once
    assert_never_in_flight_twice()


# --- 7. Redis unreachable at ingest -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test's own, so stopping it touches nobody else's broker."""

    def __init__(self, tmp: Path) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.tmp = tmp
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the private redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def _point_everything_at(url: str, settings) -> None:
    """Broker, cache, governor and drain keys of this process on the given Redis, as REDIS_URL would."""
    settings.REDIS_URL = url
    settings.CELERY_BROKER_URL = url
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
    app = current_app._get_current_object()
    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None
    dispatch._redis.cache_clear()


def test_redis_down_at_ingest_answers_202_and_the_sweeper_delivers_once_it_is_back(
    start_worker, flow, client, settings, tmp_path, monkeypatch
):
    """Before: 500 for an event that was stored. Redis (broker, cache, governor) really stopped at ingest.
    Only the first event waits out the broker's connection timeout: for ICBRIDGE_BROKER_PAUSE_SECONDS the
    process leaves the next ones to the sweeper without trying the broker."""
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    previous_broker = current_app.conf.broker_url
    tries: list[str] = []
    send_task = current_app.send_task

    def counted(name: str, *args, **kwargs):
        tries.append(name)
        return send_task(name, *args, **kwargs)

    monkeypatch.setattr(current_app, "send_task", counted)
    try:
        _point_everything_at(redis_server.url, settings)
        settings.ICBRIDGE_REQUEUE_AFTER_SECONDS = 2  # tasks sent while bindings were gone are sent again
        settings.ICBRIDGE_BROKER_PAUSE_SECONDS = 60
        InboundEndpoint.objects.create(flow=flow, auth_type=InboundEndpoint.AuthType.NONE)
        start_worker(REDIS_URL=redis_server.url)
        redis_server.stop()
        tries.clear()

        answers = [
            client.post(f"/api/ingest/{flow.slug}", {"id": f"evt-{n}", "OrderNumber": f"SO-{n}"}, "application/json")
            for n in range(4)
        ]

        assert [a.status_code for a in answers] == [202] * 4, answers[0].content
        assert len(tries) == 1  # the first event found the broker down; the others did not try it
        assert Message.objects.count() == 4
        assert Message.objects.filter(queued_at__isnull=True).count() == 4  # left to the sweeper, at once
        dispatch.broker_pause_forget()  # as the pause would end
        redis_server.start()
        governor.backend().reset()
        wait_until(lambda: Message.objects.filter(status=Status.DELIVERED).count() == 4, timeout=90, sweep=True)
        assert_each_written_once([f"SO-{n}" for n in range(4)])
        assert_each_message_written_once()
        assert_never_in_flight_twice()
    finally:
        redis_server.stop()
        _point_everything_at(previous_broker, settings)


# --- 13. retention and the sweeper's own queue -----------------------------------------------------------


def test_retention_never_blanks_a_message_retried_while_it_ran(start_worker, flow, django_user_model):
    """The purge read its batch, an operator retried one of them, and the purge blanked it all the same."""
    start_worker()
    message = order(flow, 1)
    old = timezone.now() - timedelta(days=40)
    Message.objects.filter(pk=message.pk).update(status=Status.SKIPPED, created_at=old, next_attempt_at=None)
    message.refresh_from_db()
    others = [order(flow, n, prefix="OLD") for n in range(3)]
    Message.objects.filter(pk__in=[m.pk for m in others]).update(status=Status.DELIVERED, created_at=old)
    actor = django_user_model.objects.create(username="operator")
    purged: list[int | BaseException] = []

    def purge() -> None:
        try:
            purged.append(retention.payloads_purge(days=30))
        except BaseException as exc:  # noqa: BLE001 - shown by the assertion below
            purged.append(exc)
        finally:
            connection.close()

    with transaction.atomic():
        assert operator.messages_retry(messages=[message], actor=actor, reason="send it after all") == 1
        purger = threading.Thread(target=purge)
        purger.start()
        # The purge has read its batch (the message still skipped, as committed) and waits for its row.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with connection.cursor() as cursor:
                # Inside a transaction pg_stat_activity is a snapshot: drop it to see the purge move on.
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query ILIKE 'UPDATE%integrations_message%'"
                )
                if cursor.fetchone()[0]:
                    break
            time.sleep(0.05)
        else:
            raise AssertionError(f"the purge never reached the retried row: {purged}")
    purger.join(timeout=30)

    assert purged == [3]  # the three delivered ones; not the one retried
    message.refresh_from_db()
    assert message.payload_in["OrderNumber"] == "SO-1"
    wait_until(lambda: Message.objects.get(pk=message.pk).status == Status.DELIVERED, timeout=30, sweep=True)
    assert RecorderRecord.objects.get(key="SO-1").payload["OrderNumber"] == "SO-1"
    assert RecorderWrite.objects.filter(idempotency_key=message.idempotency_key).count() == 1
    assert_never_in_flight_twice()


def test_the_sweeper_runs_on_time_while_slow_deliveries_hold_every_worker(start_worker, flow):
    """The sweeper shared the delivery queue: behind slow deliveries it released nothing for as long as they took."""
    flow.target.timeout_seconds = 5
    flow.target.batch_size = 1
    flow.target.save()
    set_faults("recorder", latency_ms=2500)
    start_worker("busy", concurrency=1, queues=DELIVERY_QUEUE, ICBRIDGE_SWEEP_SECONDS="1")
    start_worker("sweeper", queues=SWEEP_QUEUE, beat=True, ICBRIDGE_SWEEP_SECONDS="1")
    slow = [order(flow, n) for n in range(8)]  # 20 s of work for the one delivery slot
    wait_until(lambda: Message.objects.filter(status=Status.DELIVERING).exists(), interval=0.05)
    # A claim a killed worker left behind: only the sweeper brings it back.
    orphan = order(flow, 99, prefix="ORPHAN")
    Message.objects.filter(pk=orphan.pk).update(
        status=Status.DELIVERING, lease_expires_at=timezone.now() - timedelta(seconds=1), queued_at=None
    )
    released_by = time.monotonic() + 10

    wait_until(lambda: Attempt.objects.filter(message=orphan, error_class="pipeline.WorkerLost").exists(), timeout=10)

    assert time.monotonic() < released_by
    assert Message.objects.filter(pk__in=[m.pk for m in slow], status=Status.DELIVERED).count() < 8  # still busy
    clear_faults()
    wait_until(lambda: Message.objects.filter(status=Status.DELIVERED).count() == 9, timeout=90)
    assert_each_written_once([*(m.source_record_key for m in slow), "ORPHAN-99"])
    assert_each_message_written_once()
    assert_never_in_flight_twice(workers_lost=True)  # the orphan's claim was a lost worker's, by design


# --- 15. configuration changes reach every worker at once ---------------------------------------------------


def test_a_retry_right_after_a_value_map_fix_succeeds_and_a_failing_retry_leaves_an_attempt(
    start_worker, flow, django_user_model
):
    """Workers kept a value map for 30 s: the retry right after the fix failed again, and wrote no attempt."""
    uom = ValueMap.objects.create(name="uom")
    ValueMapEntry.objects.create(value_map=uom, source_value="pcs", target_value="PC")
    flow.retry_policy = THREE_TRIES
    flow.mapping_spec = {"fields": {"OrderNumber": {"path": "OrderNumber"}, "Unit": {"path": "Unit", "lookup": "uom"}}}
    flow.save()
    start_worker()
    warm = order(flow, 0, Unit="pcs")  # the worker now holds the table
    wait_until(lambda: Message.objects.get(pk=warm.pk).status == Status.DELIVERED, timeout=30)
    broken = order(flow, 1, Unit="kg")
    wait_until(lambda: Message.objects.get(pk=broken.pk).status == Status.FAILED, timeout=30)
    actor = django_user_model.objects.create(username="engineer")

    broken.refresh_from_db()
    operator.messages_retry(messages=[broken], actor=actor, reason="nothing fixed yet")
    wait_until(lambda: Attempt.objects.filter(message=broken).count() == 2, timeout=30)
    assert Message.objects.get(pk=broken.pk).status == Status.FAILED  # failed again, and the attempt says so

    ValueMapEntry.objects.create(value_map=uom, source_value="kg", target_value="KGM")  # the fix
    broken.refresh_from_db()
    operator.messages_retry(messages=[broken], actor=actor, reason="kg added to uom")

    wait_until(lambda: Message.objects.get(pk=broken.pk).status == Status.DELIVERED, timeout=10)
    assert RecorderRecord.objects.get(key="SO-1").payload["Unit"] == "KGM"
    assert list(Attempt.objects.filter(message=broken).order_by("started_at").values_list("outcome", flat=True)) == [
        Attempt.Outcome.FAILED,
        Attempt.Outcome.FAILED,
        Attempt.Outcome.DELIVERED,
    ]
    assert_each_message_written_once()
    assert_never_in_flight_twice()
