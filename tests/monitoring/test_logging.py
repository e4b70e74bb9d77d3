"""Structured logs carry the message and correlation ids; secrets and tokens never reach the output."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from django.conf import settings

from monitoring.logging import ContextFilter, JsonFormatter, RedactionFilter, redact


@pytest.fixture
def output() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger wired like settings.LOGGING's console handler, with the JSON format."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactionFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("icbridge.test.logging")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_message_and_correlation_ids(output):
    logger, stream = output

    logger.info("message %s delivered", 42, extra={"message_id": 42, "correlation_id": "corr-1"})
    logger.info("no context")

    first, second = lines(stream)
    assert first["message"] == "message 42 delivered"
    assert (first["message_id"], first["correlation_id"], first["level"]) == (42, "corr-1", "INFO")
    assert (second["message_id"], second["correlation_id"]) == ("-", "-")


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "eyJhbGciOiJIUzI1NiJ9"),
        ("POST https://login.example.com/token client_secret=abc123XYZ&grant_type=x", "abc123XYZ"),
        ('{"password": "hunter2", "user": "bob"}', "hunter2"),
        ("{'access_token': 'tok-987654'}", "tok-987654"),
        ("calling https://hub/api/webhooks/x?code=QUERYKEY42&other=1", "QUERYKEY42"),
        ("basic auth Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ("x-csrf-token: 4Ak9zQ8MBg1s", "4Ak9zQ8MBg1s"),
    ],
)
def test_redact_masks_each_kind_of_secret(text, secret):
    masked = redact(text)

    assert secret not in masked
    assert "***" in masked


def test_secrets_in_args_extras_and_tracebacks_are_masked(output):
    logger, stream = output

    logger.info(
        "token refresh with %s",
        {"client_secret": "s3cr3t-value", "client_id": "app"},
        extra={"password": "p@ss", "headers": {"Authorization": "Bearer abcdefgh123"}},
    )
    try:
        raise RuntimeError("auth failed for https://x/token?code=LEAKED-KEY")
    except RuntimeError:
        logger.exception("call failed")

    text = stream.getvalue()
    for secret in ("s3cr3t-value", "p@ss", "abcdefgh123", "LEAKED-KEY"):
        assert secret not in text
    first, second = lines(stream)
    assert first["password"] == "***"
    assert first["headers"] == {"Authorization": "***"}
    assert "client_id': 'app'" in first["message"]  # only the secret goes, the rest stays readable
    assert "RuntimeError" in second["exception"]


def test_the_settings_wire_the_filters_onto_the_console_handler():
    handler = settings.LOGGING["handlers"]["console"]

    assert handler["filters"] == ["context", "redact"]
    assert settings.LOGGING["filters"]["redact"]["()"] == "monitoring.logging.RedactionFilter"
    assert handler["formatter"] in ("plain", "json")


def test_log_format_json_is_selected_by_the_environment_and_bad_values_are_refused():
    import subprocess
    import sys

    def run(value: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-c",
                "import django, logging; django.setup();"
                "logging.getLogger('x').warning('hello token=abcdef', extra={'message_id': 7})",
            ],
            env={
                "DJANGO_SETTINGS_MODULE": "icbridge.settings",
                "LOG_FORMAT": value,
                "PATH": "/usr/bin:/bin",
                "ICBRIDGE_DATA_DIR": "/tmp/icbridge-ops-logging",
            },
            capture_output=True,
            text=True,
        )

    ok = run("json")
    entry = json.loads(ok.stderr.strip().splitlines()[-1])
    assert (entry["message"], entry["message_id"]) == ("hello token=***", 7)
    bad = run("xml")
    assert bad.returncode != 0
    assert "LOG_FORMAT: expected plain or json, got 'xml'" in bad.stderr
