"""Shared pieces of the benchmarks: a fresh database, a hub server, Celery workers, percentiles, results.

Benchmarks run on PostgreSQL and Redis (BENCH_DATABASE_URL / BENCH_REDIS_URL, defaulting to a database
`icbridge_bench` and Redis db 14), against the hub's own sandbox over loopback.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/icbridge_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
ENV = {
    **os.environ,
    "DATABASE_URL": DATABASE_URL,
    "REDIS_URL": REDIS_URL,
    "DJANGO_SETTINGS_MODULE": "icbridge.settings",
    "LOG_LEVEL": "WARNING",
    "ICBRIDGE_SWEEP_SECONDS": "2",
}


def setup_django() -> None:
    """Point this process at the benchmark database, then start Django."""
    os.environ.update({k: ENV[k] for k in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "LOG_LEVEL")})
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def fresh_database() -> None:
    """Drop and create the benchmark database, then migrate it."""
    import psycopg

    url = urlparse(DATABASE_URL)
    name = url.path.lstrip("/")
    admin = url._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=ENV, check=True)
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def fresh_django() -> None:
    """How a benchmark starts: a freshly migrated database (and empty Redis db), then Django on it."""
    fresh_database()
    setup_django()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, timeout: float = 60) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=5)
            return
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@contextmanager
def logged_process(args: Sequence[str], log_name: str, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / f"{log_name}.log").open("w") as log:
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def hub_server(workers: int = 2, threads: int = 8, log_name: str = "gunicorn", **extra_env: str) -> Iterator[str]:
    """gunicorn serving the hub (API and sandbox) on a free loopback port; yields its base URL."""
    port = free_port()
    args = [
        sys.executable, "-m", "gunicorn", "icbridge.wsgi", "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--threads", str(threads), "--worker-class", "gthread",
        "--timeout", "120", "--log-level", "warning", "--no-control-socket",
    ]  # fmt: skip
    env = {**ENV, "ICBRIDGE_PORT": str(port), **extra_env}
    with logged_process(args, log_name, env):
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/admin/login/")
        yield base


@contextmanager
def emulator_server(workers: int = 2, threads: int = 8, **extra_env: str) -> Iterator[str]:
    """gunicorn serving only the sandbox emulators (bench/emulator_urls.py), apart from the hub; its base URL.

    A target in its own processes lets a benchmark tell the bridge's CPU from the target's.
    """
    env = {"DJANGO_SETTINGS_MODULE": "emulator_settings", "PYTHONPATH": str(ROOT / "bench"), **extra_env}
    with hub_server(workers, threads, log_name="emulator-gunicorn", ICBRIDGE_SANDBOX="true", **env) as base:
        yield base


ROLE = "ICBRIDGE_BENCH_ROLE"  # set in a started process's environment, so its CPU can be told apart


def cpu_seconds(role: str) -> dict[int, float]:
    """CPU seconds (user + system, with reaped children) of each live process of this benchmark started with role.

    Read from /proc/<pid>/stat; only processes whose environment names this benchmark's database and
    ICBRIDGE_BENCH_ROLE=<role> count, since other runs share the machine.
    """
    tick = os.sysconf("SC_CLK_TCK")
    marker, database = f"{ROLE}={role}".encode(), f"DATABASE_URL={DATABASE_URL}".encode()
    found: dict[int, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            if marker not in environ or database not in environ:
                continue
            # Fields after the ")" of the command name: utime, stime, cutime, cstime are 14-17 (1-based).
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(proc.name)] = sum(int(v) for v in fields[11:15]) / tick
    return found


def postgres_cpu_seconds() -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to this benchmark's database (ps title "postgres: … <db> …").

    A backend that disconnects between two samples takes its CPU with it: persistent connections
    (CONN_MAX_AGE, the workers') are counted fully, short-lived ones not.
    """
    tick = os.sysconf("SC_CLK_TCK")
    database = urlparse(DATABASE_URL).path.lstrip("/")
    found: dict[int, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
            if title[:1] != ["postgres:"] or database not in title:
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        found[int(proc.name)] = (int(fields[11]) + int(fields[12])) / tick
    return found


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two cpu_seconds() samples; a process started in between counts whole."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


@contextmanager
def celery_workers(count: int = 2, concurrency: int = 1, pool: str = "prefork", **extra_env: str) -> Iterator[None]:
    """`count` Celery worker processes, each with `concurrency` slots."""
    env = {**ENV, **extra_env}
    with _started_workers(count, concurrency, pool, env):
        yield


@contextmanager
def _started_workers(count: int, concurrency: int, pool: str, env: dict[str, str]) -> Iterator[None]:
    if count == 0:
        yield
        return
    args = [
        sys.executable, "-m", "celery", "-A", "icbridge", "worker", f"--pool={pool}",
        f"--concurrency={concurrency}", f"--hostname=bench{count}@%h", "--loglevel=WARNING",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    with logged_process(args, f"worker-{count}", env), _started_workers(count - 1, concurrency, pool, env):
        yield


@contextmanager
def celery_beat() -> Iterator[None]:
    args = [sys.executable, "-m", "celery", "-A", "icbridge", "beat", "--loglevel=WARNING"]
    with logged_process(args, "beat", ENV):
        yield


def percentiles(values: Sequence[float], points: Sequence[int] = (50, 95, 99)) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {f"p{p}": 0.0 for p in points}
    return {f"p{p}": ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] for p in points}


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **result}, indent=2, default=str))
    return path


def print_table(rows: Sequence[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label.ljust(width)}  {value}")


def raw_commit_rate(count: int = 2000) -> float:
    """Single-row INSERT + COMMIT per row on the same PostgreSQL, one connection: rows per second."""
    import psycopg

    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE bench_commit (id serial primary key, body jsonb)")
        started = time.perf_counter()
        for n in range(count):
            conn.execute("INSERT INTO bench_commit (body) VALUES (%s)", [json.dumps({"n": n})])
        return count / (time.perf_counter() - started)
