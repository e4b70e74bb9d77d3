"""Chunked request bodies through a real gunicorn: read whole, and bounded by the size limit (413)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
import requests

from integrations.models import Flow, Message
from tests.api.conftest import SECRET, dataverse_update
from tests.conftest import Gunicorn

pytestmark = pytest.mark.django_db(transaction=True)


def _chunks(data: bytes, size: int = 8192) -> Iterator[bytes]:
    # A generator body makes requests send Transfer-Encoding: chunked with no Content-Length.
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_chunked_event_is_read_whole_and_stored(
    inbound_flow: Callable[..., Flow], start_gunicorn: Callable[..., Gunicorn]
) -> None:
    flow = inbound_flow()
    server = start_gunicorn()
    body = json.dumps(dataverse_update()).encode()
    response = requests.post(
        f"{server.base}/api/webhooks/dataverse/{flow.slug}",
        data=_chunks(body, 100),
        headers={"Content-Type": "application/json", "x-icbridge-key": SECRET},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    assert Message.objects.get(flow=flow).payload_in["entity"] == "contact"


def test_a_chunked_body_over_the_limit_is_refused_with_413_and_stores_nothing(
    inbound_flow: Callable[..., Flow], start_gunicorn: Callable[..., Gunicorn]
) -> None:
    flow = inbound_flow()
    server = start_gunicorn(ICBRIDGE_INGRESS_MAX_BODY_BYTES="1048576")
    body = b'{"pad": "' + b"x" * 3_000_000 + b'"}'  # 3 MB, as the probe sent
    response = requests.post(
        f"{server.base}/api/webhooks/dataverse/{flow.slug}",
        data=_chunks(body),
        headers={"Content-Type": "application/json", "x-icbridge-key": SECRET},
        timeout=30,
    )
    assert response.status_code == 413, response.text
    assert response.json() == {"error": "the body is over the limit of 1048576 bytes", "field": None}
    assert not Message.objects.exists()
