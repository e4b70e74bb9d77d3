"""Throttles count across gunicorn workers, and wrong keys are throttled per address (real gunicorn, 2 workers)."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from integrations.models import InboundEndpoint
from tests.conftest import Gunicorn, fixture_path

pytestmark = pytest.mark.e2e
KEY = "the-right-key-0123456789"


def _away_from_the_hour() -> None:
    # The counters are fixed windows: do not straddle an hour boundary (10/h rates below).
    left = 3600 - time.time() % 3600
    if left < 30:
        time.sleep(left + 1)


def _workers(server: Gunicorn) -> set[str]:
    return set(re.findall(r"pid=<?(\d+)", server.log_text()))


def test_wrong_keys_from_one_address_are_refused_after_the_configured_count(
    make_flow: Callable, start_gunicorn: Callable[..., Gunicorn]
) -> None:
    # given an endpoint, and a hub allowing 10 failed authentications an hour per address
    flow = make_flow(slug="guarded", entity="contact")
    InboundEndpoint.objects.create(flow=flow, auth_type="header", secret=KEY)
    server = start_gunicorn(ICBRIDGE_AUTH_FAILURE_RATE="10/h")
    url = f"{server.base}/api/webhooks/dataverse/guarded"
    _away_from_the_hour()

    # when one address sends 100 wrong keys, 8 at a time
    def guess(n: int) -> int:
        return requests.post(url, data=b"{}", headers={"x-icbridge-key": f"guess-{n}"}, timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = Counter(pool.map(guess, range(100)))
    # then exactly the configured count is checked, the rest hears 429, across both workers
    assert statuses == {401: 10, 429: 90}
    assert len(_workers(server)) == 2
    # and the address stays locked out for the window, even with the right key
    right = requests.post(url, data=b"{}", headers={"x-icbridge-key": KEY}, timeout=30)
    assert right.status_code == 429
    assert int(right.headers["Retry-After"]) > 0


def test_an_endpoint_rate_is_one_budget_for_all_workers(
    make_flow: Callable, start_gunicorn: Callable[..., Gunicorn]
) -> None:
    # given an endpoint allowing 10 requests an hour
    flow = make_flow(slug="metered", entity="contact")
    InboundEndpoint.objects.create(flow=flow, auth_type="header", secret=KEY, throttle_rate="10/h")
    server = start_gunicorn()
    url = f"{server.base}/api/webhooks/dataverse/metered"
    body = fixture_path("dataverse/webhook-contact-update-remoteexecutioncontext.json").read_bytes()
    _away_from_the_hour()

    # when 40 valid events arrive at once
    def send(_: int) -> int:
        headers = {"x-icbridge-key": KEY, "content-type": "application/json"}
        return requests.post(url, data=body, headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = Counter(pool.map(send, range(40)))
    # then 10 are taken (the first stored, the rest duplicates) and 30 throttled, whichever worker served them
    assert statuses[429] == 30
    assert statuses[202] + statuses[200] == 10
    assert len(_workers(server)) == 2
