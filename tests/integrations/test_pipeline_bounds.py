"""The pipeline's bounds, one by one: Retry-After, event times, keys, leases, classification."""

from __future__ import annotations

from datetime import timedelta
from email.utils import format_datetime

import pytest
import requests
from django.db import OperationalError
from django.utils import timezone

from integrations import errors
from integrations.models import Attempt, Message
from integrations.pipeline import deliver, operator
from integrations.pipeline.ingest import message_ingest
from integrations.protocols.events import EventError, iso_to_micros
from integrations.retry import RetryPolicy

pytestmark = pytest.mark.django_db
Status = Message.Status


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("1e12", 3600), ("inf", 3600), ("nan", 0), ("-5", 0), ("7", 7), ("", 1.0), ("soon", 1.0)],
)
def test_retry_after_is_capped_and_never_negative(header, seconds):
    assert errors.parse_retry_after(header) == seconds


def test_a_retry_after_date_years_ahead_waits_the_cap(settings):
    settings.ICBRIDGE_RETRY_AFTER_MAX_SECONDS = 120
    header = format_datetime(timezone.now() + timedelta(days=3650), usegmt=True)
    assert errors.parse_retry_after(header) == 120
    assert errors.ThrottledError("x", retry_after=1e300).retry_after == 120


def test_the_policy_honours_the_capped_wait_and_never_overflows_a_date():
    policy = RetryPolicy.from_data({"max_attempts": 3, "backoff": {"1": 10**12}, "jitter": 0})
    delay = policy.delay_after(1, retry_after=1e12)
    assert delay <= 30 * 86_400
    assert timezone.now() + timedelta(seconds=delay)  # no OverflowError
    assert RetryPolicy.from_data({"backoff": {"1": 1}, "jitter": 0}).delay_after(1, retry_after=1e12) == 3600


def test_an_event_time_beyond_the_allowed_skew_is_refused_naming_the_field(settings):
    settings.ICBRIDGE_MAX_CLOCK_SKEW_SECONDS = 60
    with pytest.raises(EventError, match="clock skew") as refused:
        iso_to_micros("9999-12-31T00:00:00Z", "modifiedon")
    assert refused.value.field == "modifiedon"
    soon = (timezone.now() + timedelta(seconds=30)).isoformat()
    assert iso_to_micros(soon, "modifiedon") is not None  # within the skew: a source clock a little ahead


def test_a_dataverse_event_from_the_future_is_refused():
    import json

    from integrations.systems.dataverse.inbound import dataverse_event
    from tests.conftest import fixture_path

    body = json.loads(fixture_path("dataverse/webhook-contact-update-remoteexecutioncontext.json").read_text())
    target = body["InputParameters"][0]["value"]["Attributes"]
    target[:] = [a for a in target if a["key"] not in ("modifiedon", "versionnumber")]
    target.append({"key": "modifiedon", "value": "/Date(253402214400000)/"})  # 9999-12-31
    for images in ("PreEntityImages", "PostEntityImages"):
        for image in body.get(images) or []:
            image["value"]["Attributes"] = [
                a for a in image["value"]["Attributes"] if a["key"] not in ("modifiedon", "versionnumber")
            ]

    with pytest.raises(EventError, match="clock skew") as refused:
        dataverse_event(body, headers={})
    assert refused.value.field == "modifiedon"


@pytest.mark.parametrize("length", [246, 247, 250, 255, 400])
def test_replay_keys_are_distinct_and_fit(length):
    key = "k" * length
    keys = {key[:255], *(operator.replay_key(key[:255], n) for n in (1, 2, 3))}
    assert len(keys) == 4
    assert max(map(len, keys)) <= 255


def test_two_long_keys_that_differ_past_the_column_stay_two_messages(make_flow):
    flow = make_flow()
    first, created_first = message_ingest(flow=flow, payload={"n": 1}, idempotency_key="x" * 300 + "a")
    second, created_second = message_ingest(flow=flow, payload={"n": 2}, idempotency_key="x" * 300 + "b")
    assert (created_first, created_second) == (True, True)
    assert first.pk != second.pk
    assert len(first.idempotency_key) <= 255


def test_a_renewed_claim_moves_its_fence_and_a_lost_one_is_not_renewed(make_flow):
    flow = make_flow()
    message, _ = message_ingest(flow=flow, payload={"OrderNumber": "SO-1"}, idempotency_key="e1")
    delivery = deliver.Delivery.claim(message)
    old = delivery.lease

    assert delivery.renew() is True
    assert delivery.lease >= old
    assert Message.objects.get(pk=message.pk).lease_expires_at == delivery.lease

    Message.objects.filter(pk=message.pk).update(status=Status.RETRYING, lease_expires_at=None)  # the sweeper won
    assert delivery.renew() is False
    assert delivery._write(status=Status.DELIVERED, outcome=Attempt.Outcome.DELIVERED) is False


def test_the_lease_covers_the_governors_wait_and_the_call_and_the_deadline_ends_before_it(make_flow, settings):
    settings.ICBRIDGE_THROTTLE_MAX_WAIT_SECONDS = 5
    settings.ICBRIDGE_LEASE_MARGIN_SECONDS = 30
    flow = make_flow()
    flow.target.timeout_seconds = 20
    assert deliver.delivery_budget(flow) == 25
    assert deliver.lease_seconds(flow) == 55


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (OperationalError("server closed the connection"), True),
        (requests.ConnectionError("refused"), True),
        (TimeoutError(), True),
        (ValueError("Exceeds the limit (4300 digits) for integer string conversion"), False),
        (MemoryError(), False),
        (TypeError("unhashable type: 'dict'"), False),
        (errors.MappingError("field 'x'"), False),
        (errors.TransientError("503"), True),
        (errors.RejectedError("400"), False),
    ],
)
def test_every_failure_is_rejected_or_transient(exc, transient):
    assert errors.is_transient(exc) is transient
