"""Failed password logins are throttled per (username, client address) by django-axes.

The admin login form is the hub's one password path: the operator API takes a token or the session
that form gives (no BasicAuthentication), so locking the form out locks the API's password path too.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

LOGIN = "/admin/login/"
PASSWORD = "Right-Horse-Battery-7"
WRONG = "wrong-Staple-Guess-42"


@pytest.fixture
def olga(db: None) -> User:
    return User.objects.create_user("olga", password=PASSWORD, is_staff=True, is_superuser=True)


def attempt(client: Client, username: str, password: str, **extra: Any) -> Any:
    return client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"}, **extra)


def logged_in(response: Any) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def fail(client: Client, username: str, times: int, **extra: Any) -> list[int]:
    return [attempt(client, username, WRONG, **extra).status_code for _ in range(times)]


def age_attempts(by: timedelta) -> None:
    """As if `by` had passed since every failure."""
    for row in AccessAttempt.objects.all():
        row.attempt_time -= by
        row.save(update_fields=["attempt_time"])


def test_settings_default_and_wiring() -> None:
    assert django_settings.ICBRIDGE_LOGIN_FAILURE_LIMIT == 10
    assert django_settings.AXES_FAILURE_LIMIT == django_settings.ICBRIDGE_LOGIN_FAILURE_LIMIT
    assert django_settings.AXES_COOLOFF_TIME == timedelta(minutes=15)
    assert django_settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert django_settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"
    assert django_settings.MIDDLEWARE[-1] == "axes.middleware.AxesMiddleware"


def test_limit_failures_then_the_right_password_is_refused(olga: User) -> None:
    client = Client()
    limit = django_settings.AXES_FAILURE_LIMIT
    codes = fail(client, "olga", limit)
    assert codes[:-1] == [200] * (limit - 1)  # the form again, with its error
    assert codes[-1] == 429  # the failure that reaches the limit is answered with the lockout already

    response = attempt(client, "olga", PASSWORD)
    assert response.status_code == 429
    page = response.content.decode().lower()
    assert "too many failed logins for this user from this address" in page
    assert "retry in" in page
    assert 880 <= int(response["Retry-After"]) <= 900
    assert client.get("/admin/").status_code == 302  # no session was opened


def test_the_cool_off_ends_by_itself(olga: User) -> None:
    client = Client()
    fail(client, "olga", django_settings.AXES_FAILURE_LIMIT)
    age_attempts(timedelta(minutes=10))
    assert attempt(client, "olga", PASSWORD).status_code == 429  # refused, and not counted: the lock is not extended
    left = int(attempt(client, "olga", PASSWORD)["Retry-After"])
    assert 280 <= left <= 300

    age_attempts(timedelta(minutes=5, seconds=1))
    assert logged_in(attempt(client, "olga", PASSWORD))
    assert client.get("/admin/").status_code == 200
    assert not AccessAttempt.objects.exists()


def test_a_success_resets_the_count(olga: User) -> None:
    client = Client()
    limit = django_settings.AXES_FAILURE_LIMIT
    fail(client, "olga", limit - 1)
    assert logged_in(attempt(client, "olga", PASSWORD))
    assert not AccessAttempt.objects.filter(username="olga").exists()

    client = Client()
    assert fail(client, "olga", limit - 1) == [200] * (limit - 1)
    assert logged_in(attempt(client, "olga", PASSWORD))


def test_counted_per_username_and_address(olga: User) -> None:
    User.objects.create_user("bruno", password=PASSWORD, is_staff=True)
    fail(Client(), "olga", django_settings.AXES_FAILURE_LIMIT, REMOTE_ADDR="198.51.100.7")
    assert attempt(Client(), "olga", PASSWORD, REMOTE_ADDR="198.51.100.7").status_code == 429

    assert logged_in(attempt(Client(), "bruno", PASSWORD, REMOTE_ADDR="198.51.100.7"))  # another user, same address
    assert logged_in(attempt(Client(), "olga", PASSWORD, REMOTE_ADDR="198.51.100.8"))  # same user, another address


def test_a_sent_x_forwarded_for_is_not_trusted_without_proxies(olga: User) -> None:
    """ICBRIDGE_NUM_PROXIES=0 (the default): a new X-Forwarded-For per guess does not get a new count."""
    client = Client()
    codes = [
        attempt(client, "olga", WRONG, HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code
        for n in range(django_settings.AXES_FAILURE_LIMIT)
    ]
    assert codes[-1] == 429
    assert attempt(client, "olga", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.200").status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"127.0.0.1"}


def test_behind_one_proxy_the_forwarded_address_is_counted(olga: User, settings: Any) -> None:
    settings.REST_FRAMEWORK = {**django_settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    via_proxy = {"REMOTE_ADDR": "10.0.0.2"}
    fail(Client(), "olga", django_settings.AXES_FAILURE_LIMIT, HTTP_X_FORWARDED_FOR="203.0.113.9", **via_proxy)
    assert attempt(Client(), "olga", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.9", **via_proxy).status_code == 429
    # A client's own entry in front of the proxy's is not trusted: the proxy's last entry is the address.
    spoofed = attempt(Client(), "olga", PASSWORD, HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.9", **via_proxy)
    assert spoofed.status_code == 429
    assert logged_in(attempt(Client(), "olga", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.10", **via_proxy))


def test_a_json_client_hears_429_with_the_api_error_shape(olga: User) -> None:
    client = Client()
    fail(client, "olga", django_settings.AXES_FAILURE_LIMIT)
    response = attempt(client, "olga", PASSWORD, HTTP_ACCEPT="application/json")
    assert response.status_code == 429
    body = response.json()
    assert set(body) == {"error", "field"}
    assert body["field"] is None
    assert "too many failed logins" in body["error"]
    assert "retry in" in body["error"]
    assert int(response["Retry-After"]) > 0
    assert "olga" not in body["error"]


def test_the_operator_api_takes_no_password_and_a_locked_out_user_gets_no_session(olga: User) -> None:
    """The API's password path is the admin login's session: locked out there, the API stays closed."""
    basic = Client().get("/api/messages", HTTP_AUTHORIZATION="Basic b2xnYTpSaWdodC1Ib3JzZS1CYXR0ZXJ5LTc=")
    assert basic.status_code in (401, 403)  # BasicAuthentication is not among the API's classes
    assert set(basic.json()) == {"error", "field"}

    client = Client()
    fail(client, "olga", django_settings.AXES_FAILURE_LIMIT)
    assert attempt(client, "olga", PASSWORD).status_code == 429
    api = client.get("/api/messages")
    assert api.status_code in (401, 403)


def test_no_password_reaches_logs_or_the_attempt_rows(olga: User, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = Client()
    fail(client, "olga", django_settings.AXES_FAILURE_LIMIT)
    attempt(client, "olga", PASSWORD)
    attempt(client, WRONG + "-as-username", WRONG)  # a password typed into the username field
    text = caplog.text + "".join(str(record.args) for record in caplog.records)
    assert "AXES" in text  # axes did log the failures
    assert WRONG not in text
    assert PASSWORD not in text
    stored = "".join(AccessAttempt.objects.values_list("post_data", flat=True))
    assert WRONG not in stored
    assert PASSWORD not in stored


def test_an_operator_unlocks_a_user(olga: User) -> None:
    client = Client()
    fail(client, "olga", django_settings.AXES_FAILURE_LIMIT)
    assert attempt(client, "olga", PASSWORD).status_code == 429
    call_command("axes_reset_username", "olga")
    assert logged_in(attempt(client, "olga", PASSWORD))
