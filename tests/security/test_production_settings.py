"""A hub started with real secrets and no other variable is production-safe: check --deploy is clean,
the sandbox is not mounted, /metrics wants its token, health says no more than its status."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

# Requests made in a fresh process with the production settings (no database query is needed).
PROBE = """
import django, json
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
client = Client(raise_request_exception=False)
out = {}
for path in ("/sandbox/recorder/orders", "/sandbox/control/recorder/faults", "/metrics", "/monitoring/metrics"):
    out[path] = client.get(path, secure=True).status_code
out["plain_http"] = client.get("/admin/login/").status_code
out["metrics_with_token"] = client.get("/metrics", secure=True, HTTP_AUTHORIZATION="Bearer t0ken").status_code
from django.conf import settings
out["sandbox"] = settings.ICBRIDGE_SANDBOX
print(json.dumps(out))
"""


def production_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG"}}
    env.update(
        DJANGO_SETTINGS_MODULE="icbridge.settings",
        ICBRIDGE_DATA_DIR=str(tmp_path),
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        FIELD_ENCRYPTION_SALT=secrets.token_urlsafe(24),
        ALLOWED_HOSTS="testserver,hub.example.com",
        **variables,
    )
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_check_deploy_prints_no_warning_with_production_variables(tmp_path: Path) -> None:
    result = run([sys.executable, "manage.py", "check", "--deploy"], production_env(tmp_path))

    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "WARNINGS" not in output, output
    assert "W0" not in output, output
    assert "System check identified no issues" in output


def test_check_deploy_warns_when_the_sandbox_is_switched_on(tmp_path: Path) -> None:
    result = run([sys.executable, "manage.py", "check", "--deploy"], production_env(tmp_path, ICBRIDGE_SANDBOX="true"))

    assert "icbridge.W002" in result.stdout + result.stderr


def test_sandbox_is_not_mounted_and_metrics_want_the_token(tmp_path: Path) -> None:
    result = run([sys.executable, "-c", PROBE], production_env(tmp_path))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])

    assert out["sandbox"] is False
    assert out["/sandbox/recorder/orders"] == 404
    assert out["/sandbox/control/recorder/faults"] == 404
    assert out["/metrics"] in (401, 403)
    assert out["/monitoring/metrics"] in (401, 403)
    assert out["plain_http"] == 301  # HTTPS only


def test_metrics_token_is_asked_for_when_set(tmp_path: Path) -> None:
    result = run([sys.executable, "-c", PROBE], production_env(tmp_path, ICBRIDGE_METRICS_TOKEN="other"))
    out = json.loads(result.stdout.strip().splitlines()[-1])

    assert (out["/metrics"], out["metrics_with_token"]) == (401, 401)


def test_the_demo_keeps_its_sandbox(tmp_path: Path) -> None:
    # given no secret set at all (make run, the test suite)
    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG"}}
    env.update(DJANGO_SETTINGS_MODULE="icbridge.settings", ICBRIDGE_DATA_DIR=str(tmp_path))
    probe = "import django; django.setup(); from django.conf import settings as s; print(s.ICBRIDGE_SANDBOX)"
    result = run([sys.executable, "-c", probe], env)

    assert result.stdout.strip() == "True", result.stderr


def test_health_tells_anonymous_callers_only_the_status(client: Any, settings: Any, db: None) -> None:
    settings.ICBRIDGE_HEALTH_DETAILS_PUBLIC = False

    body = client.get("/api/health").json()

    assert set(body) == {"status"}
