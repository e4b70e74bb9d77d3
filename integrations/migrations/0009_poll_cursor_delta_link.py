from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("integrations", "0008_recordlink_key_normal_form")]

    operations = [
        migrations.AddField(
            model_name="axpollcursor",
            name="delta_link",
            field=models.TextField(
                blank=True, help_text="Where a change-tracking source (Dataverse) resumes: its @odata.deltaLink."
            ),
        ),
    ]
