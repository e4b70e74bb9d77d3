"""The console's load runs: a running load shows its progress bar (and docs/img/initial-load-progress.png)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from integrations.models import LoadRun
from tests.browser.conftest import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_running_load_shows_a_progress_bar_in_the_console(login, make_flow):
    User.objects.create_superuser("lead", password="pw-lead-123")
    flow = make_flow(name="F&O customers → Dataverse accounts", slug="customers-load")
    running = LoadRun.objects.create(flow=flow, entity="CustomersV3", expected=5000, read=2150, written=2150, pages=5)
    LoadRun.objects.filter(pk=running.pk).update(started_at=timezone.now() - timedelta(seconds=43))
    done = LoadRun.objects.create(
        flow=make_flow(name="F&O products → Dataverse products"), entity="ReleasedProductsV2", expected=800,
        read=800, written=797, failed=3, state=LoadRun.State.DONE, finished_at=timezone.now(),
    )  # fmt: skip
    LoadRun.objects.filter(pk=done.pk).update(started_at=timezone.now() - timedelta(seconds=9))

    page = login("lead", "pw-lead-123")
    page.goto("/admin/integrations/loadrun/")

    bars = page.locator(".load-progress")
    assert bars.count() == 2
    assert page.locator(f'.load-progress[aria-valuenow="{43}"]').count() == 1  # 2150 of 5000
    assert "797 written, 3 failed" in page.content()
    screenshot(page, "initial-load-progress")
    page.goto(f"/admin/integrations/loadrun/{done.pk}/change/")
    assert page.locator('.load-progress[aria-valuenow="100"]').count() == 1
