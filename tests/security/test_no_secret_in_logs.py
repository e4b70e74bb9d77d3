"""No secret reaches a log line: gunicorn's access and error logs, Django's request log, the pipeline's logs,
in the plain and the JSON format."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from django.test import Client

from integrations.api import auth
from integrations.models import InboundEndpoint, Message, System
from integrations.pipeline.deliver import message_process
from monitoring.logging import JsonFormatter, RedactionFilter
from tests.conftest import Gunicorn, fixture_path

KEY = "dv-webhook-key-6b5a4c3d2e1f"
GUESS = "attacker-guess-9z8y7x6w"
TARGET_SECRET = "target-basic-password-1q2w3e"
BODY = fixture_path("dataverse/webhook-contact-update-remoteexecutioncontext.json").read_bytes()


def _assert_clean(text: str) -> None:
    for secret in (KEY, GUESS, TARGET_SECRET):
        assert secret not in text, f"{secret} in:\n{text[-3000:]}"


@pytest.mark.e2e
def test_gunicorn_logs_hold_no_webhook_key(make_flow: Callable, start_gunicorn: Callable[..., Gunicorn]) -> None:
    # given a flow taking Dataverse's WebhookKey (?code=), served by gunicorn with JSON logs
    flow = make_flow(slug="dv", entity="contact")
    InboundEndpoint.objects.create(flow=flow, auth_type="query_key", secret=KEY)
    server = start_gunicorn(LOG_FORMAT="json")
    url = f"{server.base}/api/webhooks/dataverse/dv"
    headers = {"content-type": "application/json", "Referer": f"https://org.crm.dynamics.com/x?code={KEY}"}
    # when an event comes with the right key, one with a wrong key, and one to an unknown flow
    ok = requests.post(f"{url}?code={KEY}", data=BODY, headers=headers, timeout=30)
    wrong = requests.post(f"{url}?code={GUESS}&x=1", data=BODY, headers=headers, timeout=30)
    missing = requests.post(f"{server.base}/api/webhooks/dataverse/nope?code={KEY}", data=BODY, timeout=30)
    # then the hub answered, and logged each request (path and status), but no key anywhere
    assert (ok.status_code, wrong.status_code, missing.status_code) == (202, 401, 404)
    log = server.log_text()
    assert '"POST /api/webhooks/dataverse/dv HTTP/1.1" 401' in log
    assert '"logger": "django.request"' in log  # the JSON 4xx lines are there, and clean
    _assert_clean(log)


@pytest.fixture
def console() -> Iterator[Callable[[logging.Formatter], io.StringIO]]:
    """The configured console handler (the one with the redaction filter), writing into a buffer."""
    handler = next(h for h in logging.getLogger().handlers if any(isinstance(f, RedactionFilter) for f in h.filters))
    stream, formatter = handler.stream, handler.formatter

    def capture(use: logging.Formatter) -> io.StringIO:
        buffer = io.StringIO()
        handler.setStream(buffer)
        handler.setFormatter(use)
        return buffer

    yield capture
    handler.setStream(stream)
    handler.setFormatter(formatter)


FORMATS = {
    "plain": logging.Formatter("%(levelname)s %(name)s [msg=%(message_id)s] %(message)s"),
    "json": JsonFormatter(),
}


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_crash_on_a_keyed_url_logs_no_key(fmt: str, console: Any, make_flow: Callable, monkeypatch: Any) -> None:
    # given a flow taking ?code=, and a crash whose text carries the URL (as a library's error would)
    flow = make_flow(slug="dv", entity="contact")
    InboundEndpoint.objects.create(flow=flow, auth_type="query_key", secret=KEY)

    def crash(*, request: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"cannot read {request.get_full_path()} (password={KEY})")

    monkeypatch.setattr(auth, "credentials_check", crash)
    buffer = console(FORMATS[fmt])
    client = Client(raise_request_exception=False)
    # when the event arrives
    response = client.post(f"/api/webhooks/dataverse/dv?code={KEY}", BODY, content_type="application/json")
    # then the 500 and its traceback are logged, without the key
    assert response.status_code == 500
    text = buffer.getvalue()
    assert "Internal Server Error" in text
    assert "RuntimeError" in text
    assert "***" in text
    _assert_clean(text)


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_failing_delivery_to_a_keyed_url_logs_no_secret(
    fmt: str, console: Any, make_flow: Callable, monkeypatch: Any
) -> None:
    # given a target reached with basic auth at a URL carrying a function key, whose transport fails
    # unexpectedly with the request in its text (a crash, not a classified error)
    def broken_send(session: Any, request: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"transport broke on {request.url} sending {request.headers.get('Authorization')}")

    monkeypatch.setattr(requests.Session, "send", broken_send)
    target = System.objects.create(
        name="Fn",
        slug="fn",
        kind=System.Kind.RECORDER,
        base_url=f"http://127.0.0.1:9/api/fn?code={KEY}",
        auth_type="basic",
        client_id="hub",
        secret=TARGET_SECRET,
        timeout_seconds=2,
    )
    flow = make_flow(slug="to-fn", target=target)
    message = Message.objects.create(flow=flow, idempotency_key="m-1", payload_in={"OrderNumber": "1"})
    buffer = console(FORMATS[fmt])
    # when it is delivered (and fails)
    message_process(message_id=message.pk)
    # then the failure is on record, and no log line carries the key or the password
    message.refresh_from_db()
    assert message.status in (Message.Status.RETRYING, Message.Status.FAILED, Message.Status.DEAD)
    assert message.last_error
    text = buffer.getvalue()
    assert "transport broke" in text
    _assert_clean(text)
    assert base64.b64encode(f"hub:{TARGET_SECRET}".encode()).decode() not in text
