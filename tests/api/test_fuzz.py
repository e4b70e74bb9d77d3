"""Property tests: whatever arrives at the webhook and operator endpoints, the answer is never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations.api.auth import hmac_sign
from integrations.models import Flow, Message
from tests.api.conftest import SECRET, dataverse_update, load

pytestmark = pytest.mark.django_db
FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)


def _mutations(document: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A real event with some of its fields dropped or replaced by any JSON value."""
    keys = sorted(document)
    return st.builds(
        lambda drop, replace: {
            **{k: v for k, v in document.items() if k not in drop},
            **{k: v for k, v in replace.items()},
        },
        st.sets(st.sampled_from(keys), max_size=4),
        st.dictionaries(st.sampled_from(keys), json_values, max_size=3),
    )


BODIES = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    _mutations(dataverse_update()).map(lambda d: json.dumps(d).encode()),
    _mutations(load("finops/event-BusinessEventsAlertEvent__captured.json")).map(lambda d: json.dumps(d).encode()),
    _mutations(load("s4hana/event-salesorder-created-v1.json")).map(lambda d: json.dumps(d).encode()),
)
ENDPOINTS = st.sampled_from(["webhooks/dataverse", "events/finops", "events/sap", "ingest"])
HEADER_VALUES = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@pytest.fixture
def hmac_flow(inbound_flow: Callable[..., Flow]) -> Flow:
    # HMAC mode: the fuzzed bodies pass authentication, so the parsers are what is exercised.
    return inbound_flow(auth_type="hmac", slug="fuzz", throttle_rate="100000/s", id_pointer="/id")


@FUZZ
@given(
    endpoint=ENDPOINTS,
    body=BODIES,
    extra=st.dictionaries(
        st.sampled_from(["ce-specversion", "x-ms-dynamics-msg-size-exceeded", "idempotency-key", "content-type"]),
        HEADER_VALUES,
        max_size=3,
    ),
)
def test_webhooks_never_answer_5xx(
    client: Client, hmac_flow: Flow, endpoint: str, body: bytes, extra: dict[str, str]
) -> None:
    headers = {**hmac_sign(secret=SECRET, body=body), **extra}
    meta = {
        f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items() if name != "content-type"
    }
    before = Message.objects.count()
    response = client.generic(
        "POST",
        f"/api/{endpoint}/{hmac_flow.slug}",
        data=body,
        content_type=extra.get("content-type", "application/json"),
        **meta,
    )
    assert response.status_code < 500, response.content
    assert set(response.json()) in ({"error", "field"}, {"message_id", "duplicate"})
    stored = Message.objects.count() - before
    assert stored == (1 if response.status_code == 202 else 0)


@FUZZ
@given(
    path=st.sampled_from(["webhooks/dataverse", "events/sap", "ingest", "events/finops/systems"]),
    slug=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20),
    headers=st.dictionaries(
        st.sampled_from(["authorization", "x-icbridge-key", "x-icbridge-signature", "x-icbridge-timestamp"]),
        HEADER_VALUES,
        max_size=4,
    ),
    query=st.sampled_from(["", "?code=", "?code=x", f"?code={SECRET}"]),
)
def test_unauthenticated_noise_never_answers_5xx(
    client: Client, inbound_flow: Callable[..., Flow], path: str, slug: str, headers: dict[str, str], query: str
) -> None:
    meta = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    response = client.post(f"/api/{path}/{slug}{query}", data=b"{}", content_type="application/json", **meta)
    assert response.status_code < 500, response.content
    assert not Message.objects.exists()


@pytest.fixture
def operator_client(client: Client, make_user: Callable[..., User], make_flow: Callable[..., Flow]) -> Client:
    flow = make_flow(slug="orders")
    for n, status in enumerate(Message.Status.values):
        Message.objects.create(flow=flow, idempotency_key=f"k{n}", payload_in={"n": n}, status=status)
    client.force_login(make_user("operator"))
    return client


QUERY = st.dictionaries(
    st.sampled_from(
        ["status", "flow", "system", "since", "until", "correlation_id", "source_record_key", "q", "limit", "offset"]
    ),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
    max_size=5,
)


@FUZZ
@given(query=QUERY)
def test_message_list_never_answers_5xx(operator_client: Client, query: dict[str, str]) -> None:
    response = operator_client.get("/api/messages", query)
    assert response.status_code < 500, response.content


@FUZZ
@given(
    action=st.sampled_from(["retry", "replay", "discard"]),
    index=st.integers(min_value=0, max_value=len(Message.Status.values) + 1),
    body=st.one_of(json_values.map(json.dumps), st.text(max_size=40)),
)
def test_message_actions_never_answer_5xx(operator_client: Client, action: str, index: int, body: str) -> None:
    ids = list(Message.objects.order_by("pk").values_list("pk", flat=True)) + [0, 999_999_999]
    response = operator_client.post(f"/api/messages/{ids[index]}/{action}", data=body, content_type="application/json")
    assert response.status_code < 500, response.content
    assert response.status_code != 200 or action == "discard"


@FUZZ
@given(body=st.one_of(json_values.map(json.dumps), st.text(max_size=40)))
def test_bulk_retry_never_answers_5xx(operator_client: Client, body: str) -> None:
    response = operator_client.post("/api/messages/retry", data=body, content_type="application/json")
    assert response.status_code < 500, response.content
