"""A flow's schedule in the console and the API, and the beat PeriodicTask kept in step with it.

The crontab is django-celery-beat's own model, chosen or created with the admin's related-object popup
(Django docs, "The Django admin site": ForeignKey fields get add/change links that open a popup).
"""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.db.models import ProtectedError
from django.urls import reverse
from django_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTasks
from django_celery_beat.schedulers import ModelEntry

from icbridge.celery import app
from integrations.api.serializers import FlowSerializer
from integrations.models import Flow, System
from integrations.polling.schedules import TASK_NAME, periodic_task_name
from tests.mapping.test_admin import form_data
from tests.schedules.conftest import crontab

pytestmark = pytest.mark.django_db
# The crontab page lists the tasks using it (an inline): its management form comes with every POST.
INLINE = {"periodictask_set-TOTAL_FORMS": "0", "periodictask_set-INITIAL_FORMS": "0"}
POPUP = {"_popup": "1", "_to_field": "id"}  # the popup's form posts them back as hidden fields
CRON = {"day_of_month": "*", "month_of_year": "*", "day_of_week": "*", "timezone": "UTC", **INLINE}


def change_url(flow: Flow) -> str:
    return reverse("admin:integrations_flow_change", args=[flow.pk])


def beat_task(flow: Flow) -> PeriodicTask:
    return PeriodicTask.objects.select_related("crontab").get(name=periodic_task_name(flow.pk))


def test_the_console_saves_a_scheduled_flow_with_a_new_crontab_and_beat_gets_its_task(console, make_system, make_flow):
    # given a webhook flow from F&O, whose form offers the crontab popup next to the schedule
    flow = make_flow(source=make_system(kind=System.Kind.FINOPS))
    page = console.get(change_url(flow)).content.decode()
    assert 'id="add_id_schedule"' in page
    assert 'id="change_id_schedule"' in page
    # when a crontab is added through the popup and the flow is saved with it as a schedule flow
    popup = console.post(
        reverse("admin:django_celery_beat_crontabschedule_add") + "?_to_field=id&_popup=1",
        {"minute": "*/15", "hour": "6-18", **CRON, **POPUP},
    )
    assert popup.status_code == 200
    assert "popup_response" in popup.content.decode()
    schedule = CrontabSchedule.objects.get(minute="*/15", hour="6-18")
    saved = console.post(change_url(flow), form_data(flow, trigger="schedule", schedule=schedule.pk))

    # then the flow has it and beat has one enabled task with that crontab, running this flow
    assert saved.status_code == 302, saved.context["adminform"].form.errors
    assert Flow.objects.get(pk=flow.pk).schedule_id == schedule.pk
    task = beat_task(flow)
    assert (task.task, json.loads(task.args), task.crontab_id, task.enabled) == (
        TASK_NAME,
        [flow.pk],
        schedule.pk,
        True,
    )
    # and django-celery-beat's own pages show it
    listed = console.get(reverse("admin:django_celery_beat_periodictask_changelist")).content.decode()
    assert periodic_task_name(flow.pk) in listed
    assert console.get(reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])).status_code == 200


def test_editing_the_crontab_changes_when_beat_runs_the_flow(console, make_scheduled_flow):
    # given a flow scheduled at 03:00 as beat's database scheduler reads it
    flow = make_scheduled_flow(schedule=crontab(minute="0", hour="3"))
    assert ModelEntry(beat_task(flow), app=app).schedule.hour == {3}
    seen = PeriodicTasks.last_change()  # what beat's DatabaseScheduler compares to reload its schedule

    # when the crontab is changed with the pencil's popup
    response = console.post(
        reverse("admin:django_celery_beat_crontabschedule_change", args=[flow.schedule_id]) + "?_to_field=id&_popup=1",
        {"minute": "30", "hour": "5", **CRON, **POPUP},
    )

    # then beat notices a change and the flow's task now runs at 05:30
    assert response.status_code == 200
    assert PeriodicTasks.last_change() > seen
    entry = ModelEntry(beat_task(flow), app=app).schedule
    assert (entry.hour, entry.minute) == ({5}, {30})


def test_choosing_another_crontab_moves_the_task_and_a_poll_trigger_removes_it(console, make_scheduled_flow):
    flow = make_scheduled_flow()
    nightly = crontab(minute="0", hour="2")

    console.post(change_url(flow), form_data(flow, schedule=nightly.pk))
    moved = beat_task(flow).crontab_id
    console.post(change_url(flow), form_data(flow, trigger="poll", schedule=""))

    assert moved == nightly.pk
    assert not PeriodicTask.objects.filter(name=periodic_task_name(flow.pk)).exists()


def test_disabling_the_flow_disables_its_task_and_deleting_it_removes_the_task(console, make_scheduled_flow):
    flow = make_scheduled_flow()
    changelist = reverse("admin:integrations_flow_changelist")
    selected = {"_selected_action": [flow.pk]}

    console.post(changelist, {"action": "disable_flows", **selected})
    disabled = beat_task(flow).enabled
    console.post(changelist, {"action": "enable_flows", **selected})
    enabled = beat_task(flow).enabled
    deleted = console.post(reverse("admin:integrations_flow_delete", args=[flow.pk]), {"post": "yes"})

    assert (disabled, enabled) == (False, True)
    assert deleted.status_code == 302
    assert not Flow.objects.filter(pk=flow.pk).exists()
    assert not PeriodicTask.objects.filter(name=periodic_task_name(flow.pk)).exists()
    assert CrontabSchedule.objects.filter(pk=flow.schedule_id).exists()  # the crontab may serve others


def test_the_console_refuses_a_schedule_flow_without_a_schedule_naming_the_field(console, make_system, make_flow):
    flow = make_flow(source=make_system(kind=System.Kind.FINOPS))

    response = console.post(change_url(flow), form_data(flow, trigger="schedule", schedule=""))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["schedule"] == [
        "schedule: required when the trigger is 'schedule' (pick a crontab, or add one with +)"
    ]
    assert Flow.objects.get(pk=flow.pk).trigger == Flow.Trigger.WEBHOOK
    assert not PeriodicTask.objects.filter(name=periodic_task_name(flow.pk)).exists()


def test_the_console_refuses_a_schedule_on_a_webhook_flow_naming_the_field(console, make_flow):
    flow = make_flow()

    response = console.post(change_url(flow), form_data(flow, schedule=crontab().pk))

    assert response.context["adminform"].form.errors["schedule"] == [
        "schedule: only a flow with trigger 'schedule' runs on one; this flow's trigger is 'webhook'"
    ]
    assert Flow.objects.get(pk=flow.pk).schedule_id is None


def test_the_console_refuses_a_schedule_for_a_source_that_cannot_be_read(console, make_flow):
    flow = make_flow()  # the recorder: no change reader, no pages

    response = console.post(change_url(flow), form_data(flow, trigger="schedule", schedule=crontab().pk))

    assert response.context["adminform"].form.errors["trigger"] == [
        "trigger: a recorder source has no change reader and cannot be read page by page, so not on a schedule"
    ]


def test_flow_clean_refuses_either_half_alone(make_flow, make_scheduled_flow):
    unscheduled = make_scheduled_flow()
    unscheduled.schedule = None
    webhook = make_flow()
    webhook.schedule = crontab()

    with pytest.raises(ValidationError) as missing:
        unscheduled.full_clean()
    with pytest.raises(ValidationError) as stray:
        webhook.full_clean()

    assert list(missing.value.message_dict) == ["schedule"]
    assert list(stray.value.message_dict) == ["schedule"]


def test_the_api_shows_the_schedule_and_its_serializer_refuses_either_half_alone(console, make_scheduled_flow):
    flow = make_scheduled_flow(slug="nightly", schedule=crontab(minute="0", hour="2"))

    shown = console.get("/api/flows/nightly").json()
    cleared = FlowSerializer(flow, data={"schedule": None}, partial=True)
    to_webhook = FlowSerializer(flow, data={"trigger": "webhook"}, partial=True)
    both = FlowSerializer(flow, data={"trigger": "webhook", "schedule": None}, partial=True)

    assert (shown["trigger"], shown["schedule"]) == ("schedule", flow.schedule_id)
    assert shown["schedule_cron"].startswith("0 2 * * *")
    assert not cleared.is_valid()
    assert cleared.errors["schedule"] == [
        "schedule: required when the trigger is 'schedule' (pick a crontab, or add one with +)"
    ]
    assert not to_webhook.is_valid()
    assert to_webhook.errors["schedule"] == [
        "schedule: only a flow with trigger 'schedule' runs on one; this flow's trigger is 'webhook'"
    ]
    assert both.is_valid(), both.errors


def test_sync_is_no_longer_a_trigger(make_flow):
    flow = make_flow()
    flow.trigger = "sync"

    with pytest.raises(ValidationError) as refused:
        flow.full_clean()

    assert list(refused.value.message_dict) == ["trigger"]
    assert "sync" not in Flow.Trigger.values


def test_a_crontab_a_flow_runs_on_cannot_be_deleted(make_scheduled_flow):
    flow = make_scheduled_flow()

    with pytest.raises(ProtectedError):
        flow.schedule.delete()

    assert beat_task(flow).crontab_id == flow.schedule_id
