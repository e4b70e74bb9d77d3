"""Flow and System pause (held, not refused), and trigram indexes for business-document search."""

from __future__ import annotations

from django.db import migrations, models

# The search (integrations.selectors.search) filters UPPER(payload::text) LIKE '%TERM%': on PostgreSQL
# these trigram indexes answer that without a scan. Other databases (the SQLite demo) scan.
SEARCH_INDEXES = {
    "message_search_in": "payload_in",
    "message_search_fetched": "payload_fetched",
    "message_search_out": "payload_out",
}


def create_search_indexes(apps, schema_editor) -> None:  # noqa: ANN001
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, column in SEARCH_INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON integrations_message "
            f'USING gin ((UPPER(("{column}")::text)) gin_trgm_ops)'
        )


def drop_search_indexes(apps, schema_editor) -> None:  # noqa: ANN001
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in SEARCH_INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0006_system_max_concurrency"),
    ]

    operations = [
        migrations.AddField(
            model_name="flow",
            name="paused_at",
            field=models.DateTimeField(
                blank=True, help_text="Paused: events are accepted (202) and held until resumed.", null=True
            ),
        ),
        migrations.AddField(
            model_name="flow",
            name="paused_by",
            field=models.CharField(blank=True, max_length=150),
        ),
        migrations.AddField(
            model_name="system",
            name="paused_at",
            field=models.DateTimeField(
                blank=True,
                help_text="Paused: events to and from it are accepted and held until resumed.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="system",
            name="paused_by",
            field=models.CharField(blank=True, max_length=150),
        ),
        migrations.RunPython(create_search_indexes, drop_search_indexes),
    ]
