"""Deadlines for outbound calls: a total time per call, not per socket read, and one budget per delivery.

requests' timeout bounds each socket operation, not the call: a target that sends its answer a few
bytes at a time, or a delivery that makes several calls (a token, a CSRF fetch, the write, a read-back),
can run far past it. A delivery must be over before its lease ends, or the sweeper hands the message to
another worker while the first send is still in flight. So every connector session mounts
DeadlineAdapter, which bounds each call as a whole:

1. The call's budget is the smaller of its own timeout and what is left of the deadline the caller set
   with deadline_until() (the pipeline sets the delivery's, shorter than its lease). Nothing left: the
   call fails at once, unsent, as a timeout (DeadlineExceeded, a requests.Timeout).
2. A watchdog shuts the call's sockets down when the budget is spent, wherever the call stands (waiting
   for the headers, reading a trickled body); the call then fails as a timeout.
3. The body is read inside the budget (unless the caller streams it), so the caller gets a complete
   answer in time or none.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.timeout import Timeout

# Monotonic time by which every call made in this context must be over (None: only each call's timeout).
_deadline: ContextVar[float | None] = ContextVar("icbridge_call_deadline", default=None)
_local = threading.local()  # the call this thread is making, so its connections can be found


class DeadlineExceeded(requests.exceptions.ReadTimeout):
    """The call's total time ran out (its timeout, or the delivery's deadline); sent False: it never left."""

    def __init__(self, text: str, *, budget: float, sent: bool = True) -> None:
        super().__init__(text)
        self.budget = budget
        self.sent = sent


@contextmanager
def deadline_until(at: float | None) -> Iterator[None]:
    """Every call made inside must be over by `at` (time.monotonic()); an enclosing earlier deadline stays."""
    current = _deadline.get()
    if at is None:
        yield
        return
    token = _deadline.set(at if current is None else min(at, current))
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left of the current deadline; None when none is set."""
    at = _deadline.get()
    return None if at is None else at - time.monotonic()


def call_budget(timeout: Any) -> float | None:
    """Seconds one call may take in all: its timeout (the read part of a pair), capped by the deadline."""
    if isinstance(timeout, tuple):
        timeout = timeout[1] if len(timeout) > 1 else timeout[0]
    elif isinstance(timeout, Timeout):
        timeout = timeout.total if timeout.total is not None else timeout.read_timeout
    own = float(timeout) if isinstance(timeout, int | float) else None
    left = remaining()
    if left is None:
        return own
    return left if own is None else min(own, left)


class _Call:
    """One call under a watchdog: the connections it used, shut down if its time runs out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self.expired = False
        self.done = False

    def attach(self, connection: Any) -> None:
        with self._lock:
            self._connections.append(connection)
            late = self.expired
        if late:
            _shut(connection)

    def expire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.expired = True
            connections = list(self._connections)
        for connection in connections:
            _shut(connection)

    def finish(self) -> None:
        with self._lock:
            self.done = True


def _shut(connection: Any) -> None:
    # shutdown() wakes a recv() blocked in another thread; close() alone would not.
    sock = getattr(connection, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Watched:
    """Mixin for urllib3 connections: the thread's current call learns of each connection it uses."""

    def _watch(self) -> None:
        call = getattr(_local, "call", None)
        if call is not None:
            call.attach(self)

    def connect(self) -> None:
        self._watch()
        super().connect()  # type: ignore[misc]

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._watch()
        super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose every call is bounded in total (see the module docstring)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None, **kwargs: Any) -> Any:
        budget = call_budget(timeout)
        if budget is None:  # no timeout and no deadline: requests' own behaviour
            return super().send(request, stream=stream, timeout=timeout, **kwargs)
        summary = f"{request.method} {str(request.url).split('?', 1)[0]}"
        if budget <= 0:
            raise DeadlineExceeded(
                f"{summary}: no time left for the call before its deadline (not sent)", budget=0.0, sent=False
            )
        connect = timeout[0] if isinstance(timeout, tuple) and timeout[0] is not None else budget
        call = _Call()
        previous = getattr(_local, "call", None)
        _local.call = call
        watchdog = threading.Timer(budget, call.expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            response = super().send(request, stream=stream, timeout=(min(float(connect), budget), budget), **kwargs)
            if not stream:
                response.content  # noqa: B018 - read the body inside the budget
        except Exception as exc:
            if call.expired:
                raise DeadlineExceeded(f"{summary}: no complete answer within {budget:.3g} s", budget=budget) from exc
            raise
        finally:
            call.finish()
            watchdog.cancel()
            _local.call = previous
        if call.expired:  # the answer came complete as the watchdog fired: the socket may be gone, the answer is not
            response.close()
        return response


def mount(session: requests.Session, **adapter_kwargs: Any) -> DeadlineAdapter:
    """Mount one DeadlineAdapter on a session for http and https; returns it."""
    adapter = DeadlineAdapter(**adapter_kwargs)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return adapter
