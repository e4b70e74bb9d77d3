"""Scheduled flows: a crontab, an F&O source that has a change feed, the recorder as target."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django_celery_beat.models import CrontabSchedule

from integrations.models import Flow, System


def crontab(minute: str = "*/15", hour: str = "*") -> CrontabSchedule:
    return CrontabSchedule.objects.create(
        minute=minute, hour=hour, day_of_month="*", month_of_year="*", day_of_week="*", timezone="UTC"
    )


@pytest.fixture
def console(db: None) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", password="x"))
    return client


@pytest.fixture
def make_scheduled_flow(make_flow: Callable[..., Flow], make_system: Callable[..., System]) -> Callable[..., Flow]:
    """A flow reading F&O customers on a schedule (every 15 minutes unless told)."""

    def make(**overrides: Any) -> Flow:
        values: dict[str, Any] = {
            "trigger": Flow.Trigger.SCHEDULE,
            "entity": "customer",
            "target_entity": "customers",
            "target_key_fields": ["CustomerAccount"],
            # F&O's change feed: a data project with change tracking on its entity (the F&O poller reads it).
            "options": {
                "poll": {"entity": "CustomersV3", "key": ["CustomerAccount"], "company": "SE01"},
                "package_project": "ScheduledCustomers",
            },
        }
        values.update(overrides)
        if values.get("source") is None or values["source"].kind == System.Kind.FINOPS:
            from sandbox import finops

            finops.change_tracking("CustomersV3")
            finops.data_project("ScheduledCustomers", entities=["CustomersV3"], incremental=True)
        if "source" not in values:
            values["source"] = make_system(kind=System.Kind.FINOPS)
        if "schedule" not in values:
            values["schedule"] = crontab()
        return make_flow(**values)

    return make
