"""Shared fixtures: systems and flows, a live sandbox, and real Celery workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from django.conf import settings as django_settings
from django.db import connection
from django.db.backends.postgresql.operations import DatabaseOperations

from integrations.mapping import valuemaps
from integrations.models import Flow, Message, System
from integrations.pipeline.dispatch import broker_pause_forget
from integrations.protocols import governor
from integrations.scenarios import traffic
from integrations.systems import clear_cache
from sandbox.finops.lines import reference_data_seed

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture_path(name: str) -> Path:
    return FIXTURES / name


_truncate = DatabaseOperations.sql_flush


def _delete_flush(
    self: DatabaseOperations, style: Any, tables: Any, *, reset_sequences: bool = False, allow_cascade: bool = False
) -> list[str]:
    """Empty the tables with DELETE rather than TRUNCATE between transactional tests.

    TRUNCATE gives every table and index a new file, and PostgreSQL fsyncs each rebuilt index at commit:
    hundreds of fsyncs per flush, seconds per test on a slow disk. DELETE of a few rows writes only WAL.
    Django's foreign keys are DEFERRABLE, and flush runs in one transaction, so the order does not matter.
    """
    if reset_sequences or not tables:
        return _truncate(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
    return ["SET CONSTRAINTS ALL DEFERRED;", *(f"DELETE FROM {self.quote_name(table)};" for table in tables)]


DatabaseOperations.sql_flush = _delete_flush  # the test database only: production never flushes


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> None:
    """The test database commits without waiting for its WAL to reach the disk (synchronous_commit off).

    A commit is still visible to every other session at once, so workers, kill -9 and races are tested as
    before; only a crash of PostgreSQL itself could lose the last commits, which no test is about.
    """
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        name = connection.ops.quote_name(connection.settings_dict["NAME"])
        cursor.execute(f"ALTER DATABASE {name} SET synchronous_commit = off")
        cursor.execute("SET synchronous_commit = off")


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing() -> None:
    """Passwords made and checked in the test process are hashed with MD5: the production hasher (PBKDF2,
    a million iterations) costs a quarter of a second a login or user, hundreds of times a run. No test
    process hands a password hash to another process (workers and gunicorn take keys and tokens)."""
    from django.conf import settings
    from django.contrib.auth import hashers

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    hashers.get_hashers.cache_clear()
    hashers.get_hashers_by_algorithm.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_connectors() -> Iterator[None]:
    # Connectors are cached per System pk; pks are reused between tests. Governor state (a Retry-After
    # pause, leases) is keyed by the target's URL, which tests share: forget it too.
    clear_cache()
    governor.backend().reset()
    broker_pause_forget()
    valuemaps.clear()  # a value map cached by an earlier test would have mapping read its stamps
    yield
    clear_cache()
    governor.backend().reset()
    broker_pause_forget()  # a test that stopped the broker leaves no pause for the next one
    valuemaps.clear()


# What the tests' F&O order, quotation and purchase lines name: the demo's items and units (as the demo installer
# seeds them) and a few more. F&O refuses a line whose item is no released product of its company or whose unit
# is not a unit of measure (sandbox.finops.lines).
FINOPS_ITEMS = [*traffic.ITEMS, *((item, "Pcs", "1.00") for item in ("B0002", "C0001", "C0003", "D0001", "Z0009"))]
FINOPS_UNITS = (*traffic.UNITS, "pallet", "Roll")
FINOPS_COMPANIES = ("usmf", "dk01", "se01")


def finops_items_seed(*, companies: tuple[str, ...] = FINOPS_COMPANIES) -> None:
    """Release FINOPS_ITEMS and create FINOPS_UNITS in these F&O legal entities (again after an emulator reset)."""
    reference_data_seed(companies=companies, items=FINOPS_ITEMS, units=FINOPS_UNITS)


@pytest.fixture
def finops_items(request: pytest.FixtureRequest, db: None) -> None:
    """The F&O emulator knows the items and units the tests' lines name, in usmf, dk01 and se01."""
    if "ms_sandbox" in request.fixturenames:
        request.getfixturevalue("ms_sandbox")  # it resets the emulators: seed after it, not before
    finops_items_seed()


@pytest.fixture
def make_system(db: None) -> Callable[..., System]:
    counter = iter(range(1, 10_000))

    def make(**overrides: Any) -> System:
        n = next(counter)
        values = {
            "name": f"System {n}",
            "slug": f"system-{n}",
            "kind": System.Kind.RECORDER,
            "base_url": "http://127.0.0.1:9/sandbox/recorder",
            "timeout_seconds": 5,
        }
        values.update(overrides)
        return System.objects.create(**values)

    return make


@pytest.fixture
def make_flow(make_system: Callable[..., System]) -> Callable[..., Flow]:
    counter = iter(range(1, 10_000))

    def make(**overrides: Any) -> Flow:
        n = next(counter)
        values: dict[str, Any] = {
            "name": f"Flow {n}",
            "slug": f"flow-{n}",
            "entity": "salesorder",
            "target_entity": "orders",
            "target_key_fields": ["OrderNumber"],
            "retry_policy": {"max_attempts": 3, "backoff": {"1": 0}, "jitter": 0},
        }
        values.update(overrides)
        values.setdefault("source", make_system())
        values.setdefault("target", make_system())
        return Flow.objects.create(**values)

    return make


@pytest.fixture
def recorder_system(make_system: Callable[..., System], live_server: Any) -> System:
    """A System whose target is the sandbox recorder served by the live server."""
    return make_system(name="Recorder", slug="recorder", base_url=f"{live_server.url}/sandbox/recorder")


@pytest.fixture
def recorder_flow(make_flow: Callable[..., Flow], recorder_system: System) -> Flow:
    return make_flow(target=recorder_system)


# --- real Celery workers ------------------------------------------------------


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.fail("worker tests need PostgreSQL: set DATABASE_URL (make test does)")
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def broker() -> redis.Redis:
    return redis.Redis.from_url(django_settings.CELERY_BROKER_URL)


def all_queues() -> str:
    """The pipeline's queue and the sweeper's (settings.ICBRIDGE_SWEEP_QUEUE): what a test worker consumes."""
    return f"{django_settings.CELERY_TASK_DEFAULT_QUEUE},{django_settings.ICBRIDGE_SWEEP_QUEUE}"


class WorkerProcess:
    """A `celery worker` subprocess against the test database and the test broker.

    It consumes both queues unless told which (queues="icbridge-sweep": a sweeper of its own); with
    beat=True it runs beat inside too (the real sweeper's schedule, ICBRIDGE_SWEEP_SECONDS).
    """

    def __init__(
        self,
        name: str,
        concurrency: int,
        log_dir: Path,
        extra_env: dict[str, str],
        *,
        queues: str | None = None,
        beat: bool = False,
    ) -> None:
        self.log_path = log_dir / f"worker-{name}.log"
        env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "REDIS_URL": django_settings.CELERY_BROKER_URL,
            "DJANGO_SETTINGS_MODULE": "icbridge.settings",
            "ICBRIDGE_LEASE_MARGIN_SECONDS": "1",
            **extra_env,
        }
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "icbridge",
                "worker",
                "--pool=prefork",
                f"--concurrency={concurrency}",
                f"--hostname={name}@%h",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                f"--queues={queues or all_queues()}",
                *(
                    ["--beat", "--scheduler=celery.beat:PersistentScheduler", f"--schedule={log_dir / f'beat-{name}'}"]
                    if beat
                    else []
                ),
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so kill -9 reaches the pool children too
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log_path.read_text():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"worker did not start:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """kill -9 the worker and its pool children at once: no chance to clean up."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture
def start_worker(transactional_db: None, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real workers; the broker's queue is emptied first so no earlier test's tasks leak in."""
    broker().flushdb()
    workers: list[WorkerProcess] = []

    def start(
        name: str = "w1", concurrency: int = 1, *, queues: str | None = None, beat: bool = False, **extra_env: str
    ) -> WorkerProcess:
        worker = WorkerProcess(name, concurrency, tmp_path, extra_env, queues=queues, beat=beat)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
    broker().flushdb()


def wait_until(predicate: Callable[[], bool], timeout: float = 60, interval: float = 0.2, sweep: bool = False) -> None:
    """Poll until predicate() holds; with sweep=True run the beat sweeper each round, as beat would."""
    from integrations.pipeline.sweep import messages_sweep

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if sweep:
            messages_sweep()
        time.sleep(interval)
    statuses = dict(Message.objects.values_list("id", "status"))
    raise AssertionError(f"condition not met within {timeout} s; message statuses: {statuses}")


# --- a real gunicorn (2 workers) on a free loopback port -----------------------------------------


@dataclass
class Gunicorn:
    base: str
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def start_gunicorn(transactional_db: None, tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    """gunicorn with the Procfile's config file and access log, 2 workers, on the test DB and Redis."""
    processes: list[subprocess.Popen] = []

    def start(**extra_env: str) -> Gunicorn:
        port = _free_port()
        log_path = tmp_path / f"gunicorn-{port}.log"
        env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "REDIS_URL": django_settings.CELERY_BROKER_URL,
            "DJANGO_SETTINGS_MODULE": "icbridge.settings",
            "ICBRIDGE_INGRESS_CONFIG_TTL": "0",
            **extra_env,
        }
        args = [
            sys.executable, "-m", "gunicorn", "icbridge.wsgi", "--config", "gunicorn.conf.py",
            # Sync workers take one connection at a time, so concurrent clients must reach both processes.
            "--bind", f"127.0.0.1:{port}", "--workers", "2", "--worker-class", "sync", "--timeout", "60",
            "--access-logfile", "-", "--no-control-socket",
        ]  # fmt: skip
        log = log_path.open("w")
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        processes.append(process)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{base}/api/messages", timeout=5)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError(f"gunicorn did not start:\n{log_path.read_text()[-3000:]}") from None
                time.sleep(0.3)
        # Both workers must be up, so requests really spread over two processes.
        while log_path.read_text().count("Booting worker") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        return Gunicorn(base=base, log_path=log_path)

    yield start
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
