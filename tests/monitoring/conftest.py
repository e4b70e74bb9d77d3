"""Helpers for monitoring tests: delivered orders at the recorder, raw message rows, a webhook catcher."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from integrations.models import Flow, Message
from integrations.pipeline import deliver as pipeline
from integrations.pipeline.ingest import message_ingest


def deliver_order(flow: Flow, number: str, **fields: Any) -> Message:
    """Ingest one order event and run it through the pipeline to the recorder."""
    message, _ = message_ingest(
        flow=flow,
        payload={"OrderNumber": number, **fields},
        idempotency_key=f"evt-{number}",
        source_record_key=number,
    )
    pipeline.message_process(message_id=message.pk)
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED, message.last_error
    return message


@pytest.fixture
def make_message() -> Callable[..., Message]:
    counter = iter(range(1, 100_000))

    def make(flow: Flow, status: str = Message.Status.DELIVERED, **overrides: Any) -> Message:
        n = next(counter)
        values: dict[str, Any] = {
            "flow": flow,
            "idempotency_key": f"raw-{n}",
            "payload_in": {"OrderNumber": f"RAW-{n}"},
            "status": status,
            "source_record_key": f"RAW-{n}",
        }
        values.update(overrides)
        return Message.objects.create(**values)

    return make


class _Catcher(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_catcher() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP endpoint standing in for a Teams/Slack incoming webhook; yields (url, received bodies)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Catcher)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook?code=secret-key", server.received  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
