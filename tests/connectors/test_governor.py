"""The rate governor: one token bucket, slot pool and Retry-After gate per target, over real Redis.

Counts, not durations: the bucket's upper bound holds by construction, and where time passes it is
read from the Redis server's clock, the one the scripts use.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from django.conf import settings as django_settings
from django.core.signals import request_started
from requests.adapters import HTTPAdapter

from integrations import errors
from integrations.models import Attempt, Flow, Message, System
from integrations.pipeline.ingest import message_ingest
from integrations.protocols import governor as gov
from integrations.protocols.governor import Governor, Limits, LocalBackend, RedisBackend
from integrations.protocols.transport import DeliveryRequest
from integrations.systems import connector_class, get_connector
from sandbox.common.faults import clear_faults, set_faults
from sandbox.models import RecorderRecord
from tests.conftest import ROOT, wait_until


def redis_governor(identity: str = "test-target", **limits: Any) -> Governor:
    return Governor(
        identity=identity, name="Target", limits=Limits(**limits), backend=RedisBackend(django_settings.REDIS_URL)
    )


def redis_seconds() -> float:
    seconds, micros = RedisBackend(django_settings.REDIS_URL).client.time()
    return seconds + micros / 1e6


def order(number: str) -> DeliveryRequest:
    return DeliveryRequest(
        entity="orders", operation="upsert", payload={"OrderNumber": number}, key={"OrderNumber": number},
        idempotency_key=f"evt-{number}",
    )  # fmt: skip


@pytest.fixture
def arrivals() -> Iterator[list[tuple[float, str]]]:
    """(monotonic time, path) of every request the live sandbox recorder received, from any process."""
    seen: list[tuple[float, str]] = []
    lock = threading.Lock()

    def note(sender: Any, environ: dict[str, Any], **kwargs: Any) -> None:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/sandbox/recorder/"):
            with lock:
                seen.append((time.monotonic(), path))

    request_started.connect(note, dispatch_uid="test_governor_arrivals")
    yield seen
    request_started.disconnect(dispatch_uid="test_governor_arrivals")


# --- the token bucket -------------------------------------------------------------------------


def test_the_bucket_grants_at_most_the_rate_however_many_ask():
    # given 20 requests/s and three threads asking as fast as they can, never waiting for a token
    governor = redis_governor(rate=20.0, max_wait=0)
    granted = [0]
    lock = threading.Lock()
    stop = time.monotonic() + 1.5

    def ask() -> None:
        while time.monotonic() < stop:
            try:
                with governor.slot("PUT /x"):
                    with lock:
                        granted[0] += 1
            except errors.ThrottledError:
                pass

    # when they ask for 1.5 s (measured on the Redis clock)
    started = redis_seconds()
    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = redis_seconds() - started

    # then no more than rate × elapsed + the one token the bucket holds went out, and the rate was used
    assert granted[0] <= 20 * elapsed + 1
    assert granted[0] >= 20 * elapsed * 0.5


def test_paced_for_a_sliding_window_no_window_at_the_target_overflows():
    """Dataverse "Service protection API limits": N requests per sliding window per user; paced, no 429 arises."""
    # given a target allowing 11 requests per sliding second, and a bucket paced for it with 0.2 s of jitter
    rate = gov.rate_within_window(requests=11, window_seconds=1.0, jitter_seconds=0.2)
    governor = redis_governor(identity="paced-target", rate=rate, max_wait=5)
    grants: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + 2.5

    def send() -> None:
        while time.monotonic() < stop:
            with governor.slot("POST /x"):
                with lock:
                    grants.append(redis_seconds())

    # when four senders (as four worker processes would) send as fast as the governor lets them
    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then even arriving 0.2 s closer together, no sliding second holds more than 11, and ≥ 90 % of them went
    grants.sort()
    fullest = max(sum(1 for other in grants if start <= other < start + 1.2) for start in grants)
    assert fullest <= 11
    assert len(grants) >= 0.9 * 10 / 1.2 * (grants[-1] - grants[0])
    assert rate == pytest.approx(10 / 1.2)


def test_a_send_waiting_for_its_token_does_not_go_into_a_pause_stored_meanwhile():
    """A 429 seen by another worker while this one waits for its reserved token: nothing is sent before Retry-After."""
    # given 2 requests/s, the first token taken, so the next send is reserved half a second ahead
    governor = redis_governor(identity=f"reserved-{time.monotonic_ns()}", rate=2.0, max_wait=5)
    with governor.slot("POST /first"):
        pass
    # when another worker stores a 5 s Retry-After pause while this send waits for its token
    pauser = threading.Timer(0.1, governor.pause, args=(5,))
    pauser.start()
    sent: list[str] = []
    with pytest.raises(errors.ThrottledError) as raised:
        with governor.slot("POST /second"):
            sent.append("POST /second")
    pauser.join()

    # then the send fails unsent with the pause's time left, like one that asked after the pause
    assert sent == []
    assert raised.value.retry_after > 4
    assert raised.value.request_summary == "POST /second (not sent)"


def test_a_window_of_one_request_cannot_be_paced():
    with pytest.raises(ValueError, match="at least 2 requests"):
        gov.rate_within_window(requests=1, window_seconds=10)


def test_a_token_further_away_than_the_max_wait_fails_unsent_with_the_wait():
    governor = redis_governor(rate=1.0, max_wait=0.2)
    with governor.slot("PUT /x"):
        pass

    with pytest.raises(errors.ThrottledError) as refused:
        with governor.slot("PUT /x"):
            raise AssertionError("not granted")  # pragma: no cover

    assert 0.2 < refused.value.retry_after <= 1.0
    assert refused.value.status_code is None
    assert refused.value.request_summary == "PUT /x (not sent)"


def test_a_send_waits_for_its_token_within_the_max_wait():
    governor = redis_governor(rate=10.0, max_wait=5)
    started = redis_seconds()

    for _ in range(6):
        with governor.slot("PUT /x"):
            pass

    # six tokens one tenth of a second apart: the last one came at least half a second after the first
    assert redis_seconds() - started >= 0.5 - 0.002


# --- the Retry-After gate -----------------------------------------------------------------------


def test_a_429_pauses_the_other_connectors_of_the_same_target_identity(
    recorder_system: System, make_system: Callable[..., System]
) -> None:
    # given two Systems at the same recorder with the same client id, and one somewhere else
    twin = make_system(name="Recorder twin", slug="recorder-twin", base_url=recorder_system.base_url + "/")
    elsewhere = make_system(
        name="Other target", slug="other", base_url=recorder_system.base_url.replace("recorder", "x")
    )
    set_faults("recorder", throttle_rate=1.0, retry_after_seconds=30)
    first, second = get_connector(recorder_system), get_connector(twin)
    sent: list[str] = []
    second.session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request.url))

    # when the first is answered 429
    with pytest.raises(errors.ThrottledError) as refused:
        first.deliver(order("G1"))

    # then the twin does not even ask, and the unrelated target is not paused
    with pytest.raises(errors.ThrottledError) as held_back:
        second.deliver(order("G2"))
    assert refused.value.status_code == 429
    assert held_back.value.status_code is None
    assert 28 < held_back.value.retry_after <= 30
    assert sent == []
    assert get_connector(elsewhere).retry_after_remaining() == 0


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_429_pauses_every_worker_process_until_retry_after(
    start_worker: Callable[..., Any], recorder_flow: Flow, arrivals: list[tuple[float, str]]
) -> None:
    # given two worker processes and a recorder that answers every request 429, Retry-After 8 s
    retry_after = 8
    recorder_flow.retry_policy = {"max_attempts": 50, "backoff": {"1": 1}, "jitter": 0}
    recorder_flow.save()
    recorder_flow.target.batch_size = 1  # one request per message
    recorder_flow.target.save()
    set_faults("recorder", throttle_rate=1.0, retry_after_seconds=retry_after)
    workers = [start_worker("w1"), start_worker("w2")]

    # when one message is answered 429, and ten more come while the pause lasts
    ingest(recorder_flow, "FIRST")
    wait_until(lambda: Attempt.objects.filter(response_status=429).exists(), timeout=30)
    seen = time.monotonic()
    first_429 = arrivals[0][0]
    for n in range(10):
        ingest(recorder_flow, f"HELD-{n}")
    wait_until(
        lambda: (
            Attempt.objects.filter(message__idempotency_key__startswith="evt-HELD").values("message").distinct().count()
            == 10
        ),
        timeout=30,
    )
    time.sleep(max(0.0, first_429 + retry_after - time.monotonic()))

    # then both processes tried, and only the first request reached the target before Retry-After
    assert [t for t, _ in arrivals if t < first_429 + retry_after] == [first_429]
    assert seen > first_429
    held = Attempt.objects.filter(message__idempotency_key__startswith="evt-HELD")
    assert held.filter(response_status=None, request_summary__endswith="(not sent)").exists()
    assert all(" received" in worker.log_path.read_text() for worker in workers)

    # and once the target recovers, every message is delivered, each written once
    clear_faults("recorder")
    wait_until(lambda: Message.objects.filter(status=Message.Status.DELIVERED).count() == 11, timeout=90, sweep=True)
    assert set(RecorderRecord.objects.values_list("writes", flat=True)) == {1}


def ingest(flow: Flow, number: str) -> None:
    message_ingest(
        flow=flow, payload={"OrderNumber": number}, idempotency_key=f"evt-{number}", source_record_key=number,
        source_version=1,
    )  # fmt: skip


# --- the concurrency limit ----------------------------------------------------------------------


class CountingAdapter(HTTPAdapter):
    """requests' transport adapter, counting the requests on the wire at once (shared between sessions)."""

    def __init__(self, counter: dict[str, int], lock: threading.Lock) -> None:
        super().__init__(max_retries=0)
        self.counter, self.lock = counter, lock

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        with self.lock:
            self.counter["now"] += 1
            self.counter["max"] = max(self.counter["max"], self.counter["now"])
        try:
            return super().send(request, **kwargs)
        finally:
            with self.lock:
                self.counter["now"] -= 1


def test_no_more_requests_in_flight_than_max_concurrency_across_connectors(recorder_system: System) -> None:
    # given at most 2 requests at once, a slow target, and six connectors (as six processes would hold)
    recorder_system.max_concurrency = 2
    recorder_system.save()
    set_faults("recorder", latency_ms=500)
    counter, lock = {"now": 0, "max": 0}, threading.Lock()
    connectors = [connector_class("recorder")(recorder_system) for _ in range(6)]
    for connector in connectors:
        connector.session.mount("http://", CountingAdapter(counter, lock))
    failures: list[BaseException] = []

    def deliver(connector: Any, n: int) -> None:
        try:
            connector.deliver(order(f"C{n}"))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    # when all six deliver at once
    threads = [threading.Thread(target=deliver, args=(c, n)) for n, c in enumerate(connectors)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then all were delivered, never more than two on the wire together
    assert failures == []
    assert RecorderRecord.objects.count() == 6
    assert counter["max"] == 2


HOLDER = """
import sys, time
from integrations.protocols.governor import Governor, Limits, RedisBackend
governor = Governor(identity=sys.argv[2], name="holder", limits=Limits(max_concurrency=1, lease_seconds=5),
                    backend=RedisBackend(sys.argv[1]))
with governor.slot("PUT /x"):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_killed_holders_slot_is_free_again_after_its_lease():
    # given a process holding the only slot of a target, with a 5 s lease, killed with SIGKILL
    identity = "killed-holder"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, django_settings.REDIS_URL, identity],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "holding"
    finally:
        holder.kill()
        holder.wait(timeout=10)
    governor = redis_governor(identity, max_concurrency=1, max_wait=0)

    # when another asks at once, then until the lease has run out
    with pytest.raises(errors.ThrottledError) as busy:
        with governor.slot("PUT /x"):
            raise AssertionError("the dead holder's slot was free at once")  # pragma: no cover

    def slot_free() -> bool:
        try:
            with governor.slot("PUT /x"):
                return True
        except errors.ThrottledError:
            return False

    # then the slot was busy first and is free again within a bounded time
    assert "slot(s) stayed busy" in busy.value.message
    wait_until(slot_free, timeout=20, interval=0.1)


# --- without Redis ------------------------------------------------------------------------------


def test_without_redis_the_in_process_governor_keeps_the_rules(recorder_system: System, settings: Any) -> None:
    # given no REDIS_URL (the embedded demo) and a target that throttles, one slot, one request/s
    settings.REDIS_URL = ""
    recorder_system.max_concurrency = 1
    recorder_system.save()
    connector = get_connector(recorder_system)
    assert isinstance(connector.governor.backend, LocalBackend)
    sent: list[str] = []
    connector.session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request.url))
    set_faults("recorder", throttle_rate=1.0, retry_after_seconds=30)

    # when a 429 comes back, and a second delivery is tried
    with pytest.raises(errors.ThrottledError) as refused:
        connector.deliver(order("L1"))
    with pytest.raises(errors.ThrottledError) as held_back:
        connector.deliver(order("L2"))

    # then the second never left the process; slots and tokens are kept in process too
    assert (refused.value.status_code, held_back.value.status_code) == (429, None)
    assert len(sent) == 1
    assert 28 < connector.retry_after_remaining() <= 30
    slots = Governor(identity="slots", name="L", limits=Limits(max_concurrency=1, max_wait=0), backend=gov.backend(""))
    tokens = Governor(identity="tokens", name="L", limits=Limits(rate=1.0, max_wait=0), backend=gov.backend(""))
    with slots.slot("PUT /x"), pytest.raises(errors.ThrottledError, match="slot"):
        with slots.slot("PUT /x"):
            raise AssertionError("two requests in one slot")  # pragma: no cover
    with tokens.slot("PUT /x"), pytest.raises(errors.ThrottledError, match="requests/s"):
        with tokens.slot("PUT /x"):
            raise AssertionError("two tokens within a second")  # pragma: no cover
