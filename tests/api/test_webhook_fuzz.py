"""Fuzz every kind of webhook endpoint: 5,000 mutated requests, no 5xx, every 2xx stored, nothing stored on a 4xx."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from integrations.models import Flow, System
from tests.api.conftest import SECRET
from tests.fuzzing import fuzz, make_endpoints

REQUESTS = 5_000
SEED = 20261202


@pytest.fixture
def endpoints(make_flow: Callable[..., Flow], make_system: Callable[..., System]) -> list[tuple[str, str, str]]:
    return make_endpoints(make_flow, make_system, SECRET)


def test_five_thousand_hostile_requests_get_no_5xx_and_4xx_store_nothing(endpoints, settings):
    settings.ICBRIDGE_INGRESS_THROTTLE_RATE = "1000000/s"  # the fuzz is about input, not rate
    settings.ICBRIDGE_AUTH_FAILURE_RATE = "1000000/s"
    tally = fuzz(Client(raise_request_exception=False), endpoints, REQUESTS, SEED, SECRET)
    assert tally.requests == REQUESTS
    assert tally.problems == [], f"{len(tally.problems)} problems; first: {tally.problems[:5]}"
    # The mutator must reach both sides: stored events and refusals (else it tests nothing).
    assert sum(n for code, n in tally.statuses.items() if code < 300) > 500, tally.summary()
    assert sum(n for code, n in tally.statuses.items() if 400 <= code < 500) > 1000, tally.summary()
