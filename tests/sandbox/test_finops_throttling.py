"""F&O throttling since 10.0.36: on the environment's resource use and the integration's priority."""

from __future__ import annotations

from sandbox import finops
from sandbox.azuread.registrations import find_app
from tests.connectors.microsoft_support import CLIENT_ID, TENANT, MsClient

pytest_plugins = ["tests.connectors.microsoft_support"]

DATA = "/sandbox/finops/data"
MESSAGE = "This request could not be processed at this time due to system experiencing high resource utilization."


def test_a_low_priority_integration_is_throttled_first_with_retry_after(fo: MsClient) -> None:
    """Priority-based throttling: under load the lower-priority integration gets 429 + Retry-After first."""
    fo.fetch_token("finops")
    oid = find_app(TENANT, CLIENT_ID).data["object_id"]
    finops.configure_service_protection(requests=4, window_seconds=30, priorities={oid: "Low"})

    answers = [fo.call("GET", f"{DATA}/CustomersV3") for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]  # Low: half of the environment's capacity
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 30
    assert answers[2].json()["error"]["message"] == MESSAGE


def test_throttling_counts_the_environment_not_the_user(fo: MsClient) -> None:
    """Priority-based throttling replaced the user-based limits: the count is the environment's."""
    finops.configure_service_protection(requests=2, window_seconds=30)
    limits = finops.auth.LIMITS

    limits.counters.enter("someone-else", limits.current())
    limits.counters.enter("someone-else", limits.current())
    answer = fo.call("GET", f"{DATA}/CustomersV3")

    assert answer.status_code == 429
    assert "execution_ms" not in limits.current()
