"""Settings come only from the environment; a bad value stops the start and names the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PRINT_SETTINGS = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL)"
)


def start(tmp_path, **variables: str) -> subprocess.CompletedProcess:
    keep = {"PATH", "HOME", "LANG"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(DJANGO_SETTINGS_MODULE="icbridge.settings", ICBRIDGE_DATA_DIR=str(tmp_path), **variables)
    return subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_no_variables_means_sqlite_and_a_serverless_broker(tmp_path):
    result = start(tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.sqlite3", "filesystem://"]


def test_database_and_redis_urls_switch_to_postgresql_and_redis(tmp_path):
    result = start(tmp_path, DATABASE_URL="postgres://u@db:5432/icb", REDIS_URL="redis://cache:6379/0")

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.postgresql", "redis://cache:6379/0"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "nosuchdb://x/y"),
        ("REDIS_URL", "http://cache:6379"),
        ("ICBRIDGE_SWEEP_SECONDS", "often"),
        ("ICBRIDGE_SWEEP_SECONDS", "-1"),
        ("DEBUG", "maybe"),
        ("ICBRIDGE_PORT", "eighty"),
    ],
)
def test_a_wrong_value_fails_at_start_naming_the_variable(tmp_path, variable, value):
    result = start(tmp_path, **{variable: value})

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr.strip().splitlines()[-1]


def test_a_variable_may_come_from_a_file(tmp_path):
    secret = tmp_path / "db_url"
    secret.write_text("postgres://u@db:5432/from_file\n")

    result = start(tmp_path, DATABASE_URL_FILE=str(secret))

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "django.db.backends.postgresql"
