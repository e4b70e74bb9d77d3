# Message.payload_fetched: what completion and fetch read, kept apart from the event as received.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('integrations', '0003_poll_cursor_help_text'),
    ]

    operations = [
        migrations.AddField(
            model_name='message',
            name='payload_fetched',
            field=models.JSONField(blank=True, help_text='What the source or a read-back added before mapping (top-level keys over payload_in).', null=True),
        ),
        migrations.AlterField(
            model_name='message',
            name='payload_in',
            field=models.JSONField(help_text='The event as received; never changed after ingest.'),
        ),
    ]
