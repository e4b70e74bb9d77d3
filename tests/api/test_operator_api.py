"""The operator REST API: authentication, role permissions, filters, actions, no secrets."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from integrations.api.serializers import FlowSerializer
from integrations.models import Attempt, AuditEntry, Flow, InboundEndpoint, Message, System
from integrations.services.roles import AUDITOR, ENGINEER, OPERATOR

pytestmark = pytest.mark.django_db
Status = Message.Status


@pytest.fixture
def make_message(make_flow: Callable[..., Flow]) -> Callable[..., Message]:
    counter = iter(range(1, 10_000))
    default_flow: list[Flow] = []

    def make(**fields: Any) -> Message:
        n = next(counter)
        if "flow" not in fields:
            if not default_flow:
                default_flow.append(make_flow(slug="orders"))
            fields["flow"] = default_flow[0]
        values = {"idempotency_key": f"evt-{n}", "payload_in": {"n": n}, "source_record_key": f"SO-{n}"}
        values.update(fields)
        return Message.objects.create(**values)

    return make


def _as(client: Client, user: User) -> Client:
    client.force_login(user)
    return client


# --- authentication and roles ------------------------------------------------------------------


def test_anonymous_is_refused(client: Client, db: None) -> None:
    response = client.get("/api/messages")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert set(response.json()) == {"error", "field"}


def test_token_authentication(client: Client, make_user: Callable[..., User], make_message: Any) -> None:
    # given an operator with an API token
    make_message()
    token = Token.objects.create(user=make_user(OPERATOR))
    # when the list is asked for with the token only
    response = client.get("/api/messages", HTTP_AUTHORIZATION=f"Token {token.key}")
    # then it answers
    assert response.status_code == 200
    assert response.json()["count"] == 1


def test_wrong_token_is_401(client: Client, db: None) -> None:
    response = client.get("/api/messages", HTTP_AUTHORIZATION="Token not-a-real-token")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_user_without_a_role_sees_nothing(client: Client, make_user: Callable[..., User]) -> None:
    response = _as(client, make_user(None)).get("/api/messages")
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("role", "can_read", "can_act", "can_read_audit"),
    [(OPERATOR, True, True, False), (ENGINEER, True, False, False), (AUDITOR, True, False, True)],
)
def test_roles_match_the_admin_roles(
    client: Client,
    make_user: Callable[..., User],
    make_message: Any,
    role: str,
    can_read: bool,
    can_act: bool,
    can_read_audit: bool,
) -> None:
    # given a failed message and a user of the role
    message = make_message(status=Status.FAILED)
    _as(client, make_user(role))
    # when the user reads, retries and reads the audit log
    read = client.get(f"/api/messages/{message.pk}")
    retry = client.post(f"/api/messages/{message.pk}/retry", {}, content_type="application/json")
    audit = client.get("/api/audit")
    # then each is allowed exactly as the role says
    assert (read.status_code == 200) is can_read
    assert (retry.status_code == 202) is can_act
    assert retry.status_code in (202, 403)
    assert (audit.status_code == 200) is can_read_audit


# --- listing and filtering ---------------------------------------------------------------------------


def test_filters(
    client: Client, make_user: Callable[..., User], make_message: Any, make_flow: Callable[..., Flow]
) -> None:
    # given messages across statuses, flows, systems and times
    other_flow = make_flow(slug="contacts")
    old = make_message(status=Status.DEAD, correlation_id="corr-1")
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    failed = make_message(status=Status.FAILED, source_record_key="SO-777")
    delivered = make_message(status=Status.DELIVERED, flow=other_flow, target_record_key="T-9")
    _as(client, make_user(AUDITOR))

    def ids(query: str) -> set[int]:
        response = client.get(f"/api/messages?{query}")
        assert response.status_code == 200, response.content
        return {item["id"] for item in response.json()["results"]}

    # then each filter selects what it says
    assert ids("status=failed,dead") == {old.pk, failed.pk}
    assert ids("flow=contacts") == {delivered.pk}
    assert ids(f"system={other_flow.source.slug}") == {delivered.pk}
    assert ids(f"since={(timezone.now() - timedelta(days=1)).isoformat().replace('+', '%2B')}") == {
        failed.pk,
        delivered.pk,
    }
    assert ids(f"until={(timezone.now() - timedelta(days=1)).isoformat().replace('+', '%2B')}") == {old.pk}
    assert ids("correlation_id=corr-1") == {old.pk}
    assert ids("source_record_key=SO-777") == {failed.pk}
    assert ids("q=T-9") == {delivered.pk}


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=lost", "status"), ("since=yesterday", "since"), ("since=2026-01-02&until=2026-01-01", "until")],
)
def test_bad_filter_is_a_400_naming_the_parameter(
    client: Client, make_user: Callable[..., User], query: str, field: str
) -> None:
    response = _as(client, make_user(OPERATOR)).get(f"/api/messages?{query}")
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_detail_shows_attempts_and_payloads(client: Client, make_user: Callable[..., User], make_message: Any) -> None:
    # given a message with one attempt
    message = make_message(status=Status.RETRYING, attempts=1)
    Attempt.objects.create(
        message=message, number=1, started_at=timezone.now(), outcome="retry", response_status=503, error_class="x.Y"
    )
    # when shown
    body = _as(client, make_user(OPERATOR)).get(f"/api/messages/{message.pk}").json()
    # then its attempts and payload are there
    assert body["payload_in"] == message.payload_in
    assert [(a["number"], a["response_status"]) for a in body["attempt_set"]] == [(1, 503)]


def test_unknown_message_is_404(client: Client, make_user: Callable[..., User]) -> None:
    response = _as(client, make_user(OPERATOR)).get("/api/messages/999999")
    assert response.status_code == 404
    assert set(response.json()) == {"error", "field"}


# --- actions ---------------------------------------------------------------------------------------------


def test_retry_requeues_and_audits(
    client: Client, make_user: Callable[..., User], make_message: Any, django_capture_on_commit_callbacks: Any
) -> None:
    message = make_message(status=Status.DEAD, attempts=8, last_error="gone")
    _as(client, make_user(OPERATOR, "alice"))
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            f"/api/messages/{message.pk}/retry", {"reason": "target fixed"}, content_type="application/json"
        )
    assert response.status_code == 202
    assert response.json()["status"] == "received"
    assert len(callbacks) == 1
    entry = AuditEntry.objects.get(message=message)
    assert (entry.action, entry.actor_name, entry.reason) == ("retry", "alice", "target fixed")


def test_retry_of_a_delivered_message_is_409(client: Client, make_user: Callable[..., User], make_message: Any) -> None:
    message = make_message(status=Status.DELIVERED)
    response = _as(client, make_user(OPERATOR)).post(f"/api/messages/{message.pk}/retry")
    assert response.status_code == 409
    assert "delivered" in response.json()["error"]


def test_bulk_retry_by_filter(client: Client, make_user: Callable[..., User], make_message: Any) -> None:
    # given two dead messages, one failed and one delivered
    dead = [make_message(status=Status.DEAD), make_message(status=Status.DEAD)]
    failed = make_message(status=Status.FAILED)
    delivered = make_message(status=Status.DELIVERED)
    # when every dead one is retried
    response = _as(client, make_user(OPERATOR)).post(
        "/api/messages/retry", {"status": "dead", "reason": "outage over"}, content_type="application/json"
    )
    # then exactly those are requeued
    assert response.status_code == 202
    assert response.json() == {"retried": 2}
    assert set(Message.objects.filter(status=Status.RECEIVED).values_list("pk", flat=True)) == {m.pk for m in dead}
    failed.refresh_from_db()
    delivered.refresh_from_db()
    assert (failed.status, delivered.status) == (Status.FAILED, Status.DELIVERED)


def test_bulk_retry_needs_a_filter(client: Client, make_user: Callable[..., User]) -> None:
    response = _as(client, make_user(OPERATOR)).post("/api/messages/retry", {}, content_type="application/json")
    assert response.status_code == 400
    assert "at least one filter" in response.json()["error"]


def test_edit_and_replay_links_the_copy(client: Client, make_user: Callable[..., User], make_message: Any) -> None:
    # given a failed message
    message = make_message(status=Status.FAILED, payload_in={"qty": "x"})
    # when replayed with a corrected payload
    response = _as(client, make_user(OPERATOR)).post(
        f"/api/messages/{message.pk}/replay",
        {"payload": {"qty": 2}, "reason": "fixed quantity"},
        content_type="application/json",
    )
    # then a new message carries the edit and points to the original, which is discarded
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["replay_of"] == message.pk
    assert body["payload_in"] == {"qty": 2}
    message.refresh_from_db()
    assert message.status == Status.DISCARDED
    assert list(message.replays.values_list("pk", flat=True)) == [body["id"]]


def test_replay_with_a_payload_that_is_not_an_object(
    client: Client, make_user: Callable[..., User], make_message: Any
) -> None:
    message = make_message(status=Status.FAILED)
    response = _as(client, make_user(OPERATOR)).post(
        f"/api/messages/{message.pk}/replay", {"payload": [1, 2]}, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json() == {"error": "field 'payload': must be a JSON object", "field": "payload"}
    assert not message.replays.exists()


def test_discard_needs_a_reason(client: Client, make_user: Callable[..., User], make_message: Any) -> None:
    message = make_message(status=Status.FAILED)
    _as(client, make_user(OPERATOR))
    missing = client.post(f"/api/messages/{message.pk}/discard", {}, content_type="application/json")
    blank = client.post(f"/api/messages/{message.pk}/discard", {"reason": "  "}, content_type="application/json")
    assert (missing.status_code, missing.json()["field"]) == (400, "reason")
    assert (blank.status_code, blank.json()["field"]) == (400, "reason")
    message.refresh_from_db()
    assert message.status == Status.FAILED


def test_discard_with_a_reason(client: Client, make_user: Callable[..., User], make_message: Any) -> None:
    message = make_message(status=Status.DEAD)
    response = _as(client, make_user(OPERATOR)).post(
        f"/api/messages/{message.pk}/discard", {"reason": "duplicate of 4711"}, content_type="application/json"
    )
    assert response.status_code == 200
    assert response.json()["status"] == "discarded"
    assert AuditEntry.objects.get(message=message).reason == "duplicate of 4711"


def test_discard_of_a_delivered_message_is_409(
    client: Client, make_user: Callable[..., User], make_message: Any
) -> None:
    message = make_message(status=Status.DELIVERED)
    response = _as(client, make_user(OPERATOR)).post(
        f"/api/messages/{message.pk}/discard", {"reason": "oops"}, content_type="application/json"
    )
    assert (response.status_code, response.json()["field"]) == (409, "status")


def test_post_that_is_not_json_is_a_400(client: Client, make_user: Callable[..., User], make_message: Any) -> None:
    message = make_message(status=Status.DEAD)
    response = _as(client, make_user(OPERATOR)).post(
        f"/api/messages/{message.pk}/discard", data="{oops", content_type="application/json"
    )
    assert response.status_code == 400
    assert set(response.json()) == {"error", "field"}


# --- flows and systems, never secrets ----------------------------------------------------------------


def test_flows_and_systems_never_show_secrets(
    client: Client, make_user: Callable[..., User], make_system: Callable[..., System], make_flow: Callable[..., Flow]
) -> None:
    # given a system and a flow each holding a secret
    system = make_system(slug="fo", secret="client-secret-value")
    flow = make_flow(source=system, slug="orders")
    InboundEndpoint.objects.create(flow=flow, auth_type="header", secret="inbound-secret-value")
    _as(client, make_user(ENGINEER))
    # when listed
    systems = client.get("/api/systems")
    flows = client.get("/api/flows")
    one = client.get("/api/flows/orders")
    # then they say a secret is set, never what it is
    for response in (systems, flows, one):
        assert response.status_code == 200
        assert b"secret-value" not in response.content
    fo = next(s for s in systems.json()["results"] if s["slug"] == "fo")
    assert fo["secret_set"] is True
    assert one.json()["inbound"] == {
        "auth_type": "header",
        "credential_name": "",
        "username": "",
        "secret_set": True,
        "throttle_rate": "",
        "max_body_bytes": None,
    }


def test_a_flow_shows_its_options_and_the_serializer_refuses_bad_ones_naming_the_key(
    client: Client, make_user: Callable[..., User], make_flow: Callable[..., Flow]
) -> None:
    # given a flow with options
    make_flow(slug="tasks", options={"only_when": {"statecode": 1}})
    _as(client, make_user(ENGINEER))
    # when read, its options are shown as stored
    assert client.get("/api/flows/tasks").json()["options"] == {"only_when": {"statecode": 1}}
    # and written through the serializer, an unknown key or an ill-typed value is refused by path
    flow = Flow.objects.get(slug="tasks")
    unknown = FlowSerializer(flow, data={"options": {"only_when": {"statecode": 1}, "fiel": 1}}, partial=True)
    ill_typed = FlowSerializer(
        flow, data={"options": {"chain": {"follows": "x", "key": "k", "step": "x"}}}, partial=True
    )
    assert not unknown.is_valid()
    assert str(unknown.errors["options"][0]).startswith("options: unknown key 'fiel'; allowed: chain, links,")
    assert not ill_typed.is_valid()
    assert ill_typed.errors["options"] == ["options.chain.step: expected a whole number, got 'x'"]
    valid = FlowSerializer(flow, data={"options": {"echo_of": "other"}}, partial=True)
    assert valid.is_valid(), valid.errors


def test_operator_api_is_throttled_per_user(
    client: Client, make_user: Callable[..., User], settings: Any, db: None
) -> None:
    settings.ICBRIDGE_OPERATOR_THROTTLE_RATE = "2/min"
    _as(client, make_user(OPERATOR))
    statuses = [client.get("/api/flows").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
