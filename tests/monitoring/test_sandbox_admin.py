"""The sandbox pages of the console: fault settings are validated and can be cleared."""

from __future__ import annotations

import pytest

from sandbox.common.faults import set_faults
from sandbox.models import FaultSettings

pytestmark = pytest.mark.django_db


def test_a_rate_outside_zero_to_one_is_refused_naming_the_field(admin_client):
    response = admin_client.post(
        "/admin/sandbox/faultsettings/add/",
        {
            "emulator": "recorder",
            "latency_ms": 0,
            "error_rate": 1.5,
            "throttle_rate": 0,
            "retry_after_seconds": 1,
            "slow_after_commit_ms": 0,
        },
    )

    assert response.status_code == 200
    assert "error_rate must be between 0 and 1 (a share of calls), got 1.5" in response.content.decode()
    assert FaultSettings.objects.exists() is False


def test_clear_faults_action(admin_client):
    faults = set_faults("recorder", down=True)

    admin_client.post(
        "/admin/sandbox/faultsettings/", {"action": "clear_selected", "_selected_action": [faults.pk], "index": 0}
    )

    assert FaultSettings.objects.exists() is False
