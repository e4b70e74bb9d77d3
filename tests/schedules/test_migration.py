"""Migration 0011: a flow that still says "sync" (the console offered it; nothing read it) becomes "webhook".

The suite runs with --no-migrations, so the migration's data step is called with today's models.
"""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.db import migrations

from integrations.models import Flow

pytestmark = pytest.mark.django_db
MIGRATION = importlib.import_module("integrations.migrations.0011_flow_schedule_ax_auth")


def test_a_sync_flow_becomes_a_webhook_flow_and_the_others_keep_their_trigger(make_flow):
    make_flow(slug="was-sync", trigger="sync")  # written as the old console could
    make_flow(slug="polled", trigger=Flow.Trigger.POLL)
    step = next(op for op in MIGRATION.Migration.operations if isinstance(op, migrations.RunPython))

    step.code(apps, None)

    assert dict(Flow.objects.values_list("slug", "trigger")) == {"was-sync": "webhook", "polled": "poll"}
