"""Initial loads: an F&O source seeded with customers, a recorder target that writes every call.

The modules using finops_system name tests.connectors.microsoft_support in their pytest_plugins.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from integrations.models import Flow, System


def seed_customers(count: int, company: str = "se01", start: int = 0, group: str = "10") -> None:
    """Rows straight into the F&O emulator's store, as if they existed before go-live."""
    from sandbox.finops.model import ENTITIES
    from sandbox.finops.store import write

    for n in range(start, start + count):
        values = {"CustomerAccount": f"C{n:05d}", "OrganizationName": f"Customer {n}", "CustomerGroupId": group}
        write("CustomersV3", ENTITIES["CustomersV3"], company, None, values)


@pytest.fixture
def load_flow(make_flow: Callable[..., Flow], finops_system: System, recorder_system: System) -> Flow:
    """F&O customers → the recorder, which honours Idempotency-Key as an upsert by key would (the fault tests')."""
    return make_flow(
        name="Customers to recorder",
        slug="customers-load",
        entity="customer",
        source=finops_system,
        target=recorder_system,
        target_entity="customers",
        target_key_fields=["CustomerAccount"],
        options={"poll": {"entity": "CustomersV3", "key": ["CustomerAccount"]}},
        retry_policy={"max_attempts": 100, "backoff": {"1": 1, "4": 2}, "jitter": 0.2},
    )
