"""`make run` from a fresh clone, with no environment variables, serves the admin, carries the demo message,
moves the traffic `generate_traffic` makes through all three scenarios (SQLite, filesystem broker), and
then reconciles clean (`manage.py reconcile` exits 0)."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def demo_message_status(database: Path) -> str | None:
    if not database.exists():
        return None
    try:
        with sqlite3.connect(database, timeout=5) as db:
            row = db.execute("SELECT status FROM integrations_message WHERE idempotency_key = 'demo-0001'").fetchone()
    except sqlite3.OperationalError:  # not migrated yet
        return None
    return row[0] if row else None


def delivered(database: Path, slug: str) -> int:
    with sqlite3.connect(database, timeout=5) as db:
        query = (
            "SELECT count(*) FROM integrations_message m JOIN integrations_flow f ON f.id = m.flow_id "
            "WHERE f.slug = ? AND m.status = 'delivered'"
        )
        return db.execute(query, (slug,)).fetchone()[0]


# One flow per scenario that generate_traffic feeds: the AX poll, and two Dataverse webhooks.
TRAFFIC_FLOWS = ("ic-dk01-po-to-se01-so", "p2c-orders-sales-to-fo", "o2c-orders-d365-to-s4")


def test_make_run_serves_the_admin_and_delivers_the_demo_message(tmp_path):
    clone = tmp_path / "icbridge"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    port = free_port()
    keep = {"PATH", "HOME", "LANG", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONFIG_FILE"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["ICBRIDGE_PORT"] = str(port)  # the only variable: a free port, so a running hub is not disturbed
    log = (tmp_path / "make-run.log").open("w")
    hub = subprocess.Popen(
        ["make", "run"], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 420  # a fresh clone creates its venv and installs first
        login = status = None
        while time.monotonic() < deadline and hub.poll() is None:
            try:
                login = requests.get(f"http://127.0.0.1:{port}/admin/login/", timeout=5)
            except (requests.ConnectionError, requests.Timeout):  # starting, or a busy box
                login = None
            status = demo_message_status(clone / "var" / "icbridge.sqlite3")
            if login is not None and login.status_code == 200 and status == "delivered":
                break
            time.sleep(2)
        output = (tmp_path / "make-run.log").read_text()
        assert login is not None, f"admin never answered:\n{output[-4000:]}"
        assert login.status_code == 200
        assert "Log in" in login.text
        assert status == "delivered", f"demo message is {status}:\n{output[-4000:]}"
        assert f"Admin: http://127.0.0.1:{port}/admin/" in output
        assert "login admin / icbridge-demo" in output

        # An operator generates traffic; every scenario's documents reach their targets.
        traffic = subprocess.run(
            [str(clone / ".venv" / "bin" / "python"), "manage.py", "generate_traffic", "--orders", "2"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert traffic.returncode == 0, traffic.stdout + traffic.stderr
        assert "failed" not in traffic.stdout, traffic.stdout
        database = clone / "var" / "icbridge.sqlite3"
        deadline = time.monotonic() + 180  # the AX poll runs on beat's schedule
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:
            counts = {slug: delivered(database, slug) for slug in TRAFFIC_FLOWS}
            if all(count >= 2 for count in counts.values()):
                break
            time.sleep(3)
        output = (tmp_path / "make-run.log").read_text()
        assert all(count >= 2 for count in counts.values()), f"{counts}:\n{output[-4000:]}"

        # A fresh clone reconciles clean: every flow, its links and (where listable) its source.
        reconcile = subprocess.run(
            [str(clone / ".venv" / "bin" / "python"), "manage.py", "reconcile"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr[-4000:]
        assert " 0 difference(s), 0 failed" in reconcile.stdout
    finally:
        if hub.poll() is None:
            os.killpg(hub.pid, signal.SIGTERM)
            try:
                hub.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(hub.pid, signal.SIGKILL)
        log.close()
