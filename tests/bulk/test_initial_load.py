"""Initial load / re-sync (issue 17 item 1): pages, resume, cancel, per-record failure, API, command."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from integrations.bulk import load
from integrations.models import AuditEntry, LoadRun, Message, ValueMap, ValueMapEntry
from integrations.pipeline import deliver, operator
from tests.bulk.conftest import seed_customers

pytest_plugins = ["tests.connectors.microsoft_support"]
pytestmark = pytest.mark.django_db(transaction=True)
State = LoadRun.State


def run_pages(run: LoadRun, limit: int = 100) -> LoadRun:
    for _ in range(limit):
        load.load_page(run_id=run.pk)
        run.refresh_from_db()
        if run.is_finished:
            return run
    raise AssertionError("the load did not end")


def test_a_load_reads_every_page_and_stores_each_record_as_one_message(load_flow):
    seed_customers(23)
    seed_customers(4, company="dk01")

    run = run_pages(load.load_start(flow=load_flow, page_size=5))

    assert (run.state, run.expected, run.read, run.written, run.failed, run.pages) == (State.DONE, 27, 27, 27, 0, 6)
    messages = Message.objects.filter(flow=load_flow)
    assert messages.count() == 27
    first = messages.get(source_record_key="dataAreaId='se01',CustomerAccount='C00000'")
    assert first.payload_in["OrganizationName"] == "Customer 0"
    assert first.headers["load_run"] == run.pk


def test_a_page_read_again_after_a_crash_stores_nothing_twice(load_flow):
    """A worker that died after its page's commit but before the ack: the page is read again."""
    seed_customers(12)
    run = load.load_start(flow=load_flow, page_size=5)
    load.load_page(run_id=run.pk)
    LoadRun.objects.filter(pk=run.pk).update(cursor="")  # as if the cursor's move had been lost

    run = run_pages(run)

    assert Message.objects.filter(flow=load_flow).count() == 12
    assert run.written == 12
    assert run.read == 17


def test_a_re_sync_stores_only_what_changed_since_the_first_load(load_flow):
    seed_customers(6)
    run_pages(load.load_start(flow=load_flow))
    seed_customers(1, start=3, group="20")  # C00003 changed: a new ETag

    again = run_pages(load.load_start(flow=load_flow))

    assert (again.read, again.written) == (6, 1)
    assert Message.objects.filter(flow=load_flow, source_record_key__endswith="'C00003'").count() == 2


def test_filters_by_company_and_refuses_modified_since_for_fo(load_flow):
    """F&O data entities have no modified date/time: a load since a moment is refused up front, saying why."""
    seed_customers(3)
    seed_customers(2, company="dk01")

    run = run_pages(load.load_start(flow=load_flow, company="DK01"))
    with pytest.raises(load.LoadError, match="since: F&O data entities have no modified date/time"):
        load.load_start(flow=load_flow, since="2000-01-01T00:00:00Z")

    assert (run.read, run.expected) == (2, 2)
    assert set(Message.objects.values_list("payload_in__dataAreaId", flat=True)) == {"dk01"}
    assert LoadRun.objects.count() == 1  # nothing started for the refused one


def test_a_cancelled_load_stops_and_stores_no_further_page(load_flow):
    seed_customers(20)
    run = load.load_start(flow=load_flow, page_size=5)
    load.load_page(run_id=run.pk)

    assert load.load_cancel(run=run) is True
    assert load.load_page(run_id=run.pk) is None
    assert load.load_cancel(run=run) is False

    run.refresh_from_db()
    assert (run.state, run.read, run.pages) == (State.CANCELLED, 5, 1)
    assert run.finished_at is not None
    assert Message.objects.filter(flow=load_flow).count() == 5


def test_one_load_at_a_time_per_flow(load_flow):
    seed_customers(2)
    load.load_start(flow=load_flow)

    with pytest.raises(load.LoadError, match="already running"):
        load.load_start(flow=load_flow)


def test_a_record_that_fails_is_a_failed_message_an_operator_retries(load_flow, django_user_model):
    groups = ValueMap.objects.create(name="custgroup")
    ValueMapEntry.objects.create(value_map=groups, source_value="10", target_value="DOMESTIC")
    load_flow.mapping_spec = {
        "fields": {
            "CustomerAccount": {"path": "CustomerAccount"},
            "Group": {"path": "CustomerGroupId", "lookup": "custgroup"},
        }
    }
    load_flow.retry_policy = {"max_attempts": 1, "backoff": {"1": 0}, "jitter": 0}
    load_flow.save()
    seed_customers(3)
    seed_customers(1, start=3, group="99")  # no value map entry: this record's mapping fails
    run_pages(load.load_start(flow=load_flow))
    for message in Message.objects.filter(flow=load_flow):
        deliver.message_process(message_id=message.pk)

    broken = Message.objects.get(source_record_key__endswith="'C00003'")
    assert broken.status in (Message.Status.FAILED, Message.Status.DEAD)
    assert Message.objects.filter(flow=load_flow, status=Message.Status.DELIVERED).count() == 3
    assert load.load_progress(run=LoadRun.objects.get())["messages_failed"] == 1

    ValueMapEntry.objects.create(value_map=groups, source_value="99", target_value="EXPORT")
    actor = django_user_model.objects.create(username="operator")
    assert operator.messages_retry(messages=[broken], actor=actor, reason="group 99 mapped") == 1
    deliver.message_process(message_id=broken.pk)

    assert Message.objects.get(pk=broken.pk).status == Message.Status.DELIVERED


def test_the_api_starts_a_load_and_shows_its_progress(load_flow, admin_client):
    seed_customers(7)

    started = admin_client.post(f"/api/flows/{load_flow.slug}/load", {"page_size": 5}, content_type="application/json")
    run = LoadRun.objects.get()
    run_pages(run)
    progress = admin_client.get(f"/api/flows/{load_flow.slug}/load")

    assert started.status_code == 202, started.content
    assert AuditEntry.objects.get(action="load_start").details["load_run"] == run.pk
    assert started.json()["expected"] == 7
    assert progress.status_code == 200
    body = progress.json()
    assert (body["state"], body["read"], body["written"], body["percent"]) == ("done", 7, 7, 100)


def test_the_api_refuses_a_second_load_and_cancels_the_running_one(load_flow, admin_client):
    seed_customers(3)
    url = f"/api/flows/{load_flow.slug}/load"
    admin_client.post(url, {}, content_type="application/json")

    second = admin_client.post(url, {}, content_type="application/json")
    cancelled = admin_client.post(url, {"cancel": True}, content_type="application/json")

    assert second.status_code == 409
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    assert not Message.objects.exists()


def test_the_api_needs_a_signed_in_operator(load_flow, client):
    assert client.post(f"/api/flows/{load_flow.slug}/load", {}, content_type="application/json").status_code == 401
    assert not LoadRun.objects.exists()


def test_the_command_prints_progress_and_fails_on_a_record_without_key(load_flow, capsys):
    seed_customers(4)
    call_command("initial_load", "--flow", load_flow.slug, "--inline", "--page-size", "3")
    out = capsys.readouterr().out
    assert "done: read 4/4, written 4, failed 0" in out
    assert "records/s" in out

    with pytest.raises(CommandError, match="failed"):
        call_command("initial_load", "--flow", load_flow.slug, "--inline", "--key", "NoSuchField")


def test_the_admin_shows_a_progress_bar_and_the_flow_action_starts_a_load(load_flow, admin_client):
    seed_customers(4)
    response = admin_client.post(
        "/admin/integrations/flow/",
        {"action": "start_initial_load", "_selected_action": [load_flow.pk]},
        follow=True,
    )
    run = run_pages(LoadRun.objects.get())

    page = admin_client.get(f"/admin/integrations/loadrun/{run.pk}/change/")
    listing = admin_client.get("/admin/integrations/loadrun/")

    assert "load" in response.content.decode()
    assert "4 record(s)" in response.content.decode()
    assert 'role="progressbar"' in page.content.decode()
    assert 'aria-valuenow="100"' in listing.content.decode()


def test_a_page_task_reads_on_while_delivery_keeps_up_and_queues_the_next_page_otherwise(load_flow, monkeypatch):
    """Reading on in the task while less than a page waits for delivery; a page's worth waiting queues the next."""
    seed_customers(12)
    queued: list[int] = []
    monkeypatch.setattr(load.dispatch, "queue_load_page", lambda *, run_id: queued.append(run_id) or True)
    monkeypatch.setattr(load, "_waiting", lambda run: 0)  # as if every stored message were delivered at once

    caught_up = load.load_start(flow=load_flow, page_size=5)
    queued.clear()  # load_start queues the first page

    load.load_page(run_id=caught_up.pk)

    caught_up.refresh_from_db()
    assert (caught_up.state, caught_up.pages, caught_up.read, queued) == (State.DONE, 3, 12, [])

    monkeypatch.undo()
    monkeypatch.setattr(load.dispatch, "queue_load_page", lambda *, run_id: queued.append(run_id) or True)
    behind = load.load_start(flow=load_flow, page_size=5)  # the first load's 12 messages wait for delivery
    queued.clear()
    load.load_page(run_id=behind.pk)

    behind.refresh_from_db()
    assert (behind.pages, queued) == (1, [behind.pk])
