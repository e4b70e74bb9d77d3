"""A call's timeout is a total, not per read: a target that trickles its answer is cut off in time."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from integrations.protocols import deadline


@pytest.fixture
def trickler() -> Iterator[str]:
    """A loopback HTTP server that answers headers at once, then one body byte every 0.2 s for 3 s."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\nContent-Type: text/plain\r\n\r\n")
                    for _ in range(15):
                        if stop.wait(0.2):
                            return
                        conn.sendall(b"x")
                except OSError:
                    continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/slow"
    stop.set()
    thread.join(timeout=5)
    server.close()


def session() -> requests.Session:
    s = requests.Session()
    deadline.mount(s, max_retries=0)
    return s


def test_a_trickled_answer_is_cut_off_at_the_call_timeout(trickler):
    started = time.monotonic()
    with pytest.raises(deadline.DeadlineExceeded, match="no complete answer within 1 s"):
        session().get(trickler, timeout=1)  # each byte comes within 0.2 s: a per-read timeout never fires
    assert time.monotonic() - started < 1.8


def test_the_delivery_deadline_caps_every_call_inside_it(trickler):
    started = time.monotonic()
    with deadline.deadline_until(time.monotonic() + 0.6), pytest.raises(requests.Timeout):
        session().get(trickler, timeout=30)
    assert time.monotonic() - started < 1.4


def test_no_time_left_means_the_call_is_not_sent(trickler):
    with deadline.deadline_until(time.monotonic() - 1), pytest.raises(deadline.DeadlineExceeded, match="not sent"):
        session().get(trickler, timeout=30)


def test_an_inner_deadline_never_extends_an_outer_one():
    outer = time.monotonic() + 1
    with deadline.deadline_until(outer), deadline.deadline_until(outer + 100):
        assert deadline.remaining() <= 1
    assert deadline.remaining() is None


def test_a_prompt_answer_is_read_whole(live_server):
    response = session().get(f"{live_server.url}/sandbox/recorder/records/", timeout=5)
    assert response.status_code == 200
    assert "records" in response.json()
