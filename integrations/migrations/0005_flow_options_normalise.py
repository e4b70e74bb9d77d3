# Flow.options now has a schema (integrations.flow_options): normalise stored rows to it where that is
# lossless. Options that are not a JSON object become {} (every reader took them as no options);
# keys whose value is null, and chain/poll/lines rules left empty ({}, "" or []), are dropped: readers
# took them as absent, the schema refuses them. Valid rows are left exactly as they are; rows still
# invalid after this are refused on their next save and fail their messages with the key named.
#
# The rules are copied here, not imported, so the migration keeps meaning what it meant.

from django.db import migrations, models

# Rules whose empty value ({}, "", []) every reader took as "not set" and the schema refuses. Not
# echo_of, links, fetch, event_types, only_when or deep_link: there an empty value is valid as it is.
EMPTY_MEANS_ABSENT = ("chain", "poll", "lines")


def normalised_options(stored):
    """The options a stored value stands for, by the readers' old rules; the same object if nothing changes."""
    if not isinstance(stored, dict):
        return {}
    cleaned = {
        key: value
        for key, value in stored.items()
        if value is not None and not (key in EMPTY_MEANS_ABSENT and value in ({}, "", []))
    }
    return stored if cleaned == stored else cleaned


def normalise_flow_options(apps, schema_editor):
    Flow = apps.get_model("integrations", "Flow")
    for flow in Flow.objects.only("pk", "options").iterator():
        options = normalised_options(flow.options)
        if options is not flow.options:
            Flow.objects.filter(pk=flow.pk).update(options=options)


class Migration(migrations.Migration):

    dependencies = [
        ('integrations', '0004_message_payload_fetched'),
    ]

    operations = [
        migrations.AlterField(
            model_name='flow',
            name='options',
            field=models.JSONField(blank=True, default=dict, help_text="The flow's options (docs/flow-options.md); validated on save."),
        ),
        migrations.RunPython(normalise_flow_options, migrations.RunPython.noop),
    ]
