"""The data steps of the squashed migration 0001_squashed_0010_load_run, kept as the migrations they
came from (0005, 0007, 0008) wrote them. MigrationLoader skips modules whose name starts with "_", so
this is not a migration itself.

On a new database these steps meet empty tables (the search indexes excepted: they are schema);
they stay in the squash, as `squashmigrations` keeps every RunPython that is not elidable.
"""

from __future__ import annotations

# --- 0005: Flow.options normalised to the schema (integrations.flow_options) -----------------------------
# Options that are not a JSON object become {} (every reader took them as no options); keys whose
# value is null, and chain/poll/lines rules left empty ({}, "" or []), are dropped: readers took them
# as absent, the schema refuses them. Valid rows are left exactly as they are. The rules are copied
# here, not imported, so the step keeps meaning what it meant.

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


# --- 0007: trigram indexes for business-document search ----------------------------------------------------
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


# --- 0008: RecordLink target keys in the target's normal form (integrations.systems.<kind>.keys) ----------
# Links written before had F&O keys in the case the mapping sent after an update (dataAreaId='SE01')
# and in the case F&O answered after a create ('se01'); echo screening compares keys exactly.


def normalise_link_keys(apps, schema_editor) -> None:
    from integrations.systems import canonical_key

    RecordLink = apps.get_model("integrations", "RecordLink")
    changed = []
    links = RecordLink.objects.select_related("flow__target").exclude(target_key="").iterator(chunk_size=2000)
    for link in links:
        key = canonical_key(link.flow.target.kind, link.target_key)
        if key != link.target_key:
            link.target_key = key[:255]
            changed.append(link)
        if len(changed) >= 2000:
            RecordLink.objects.bulk_update(changed, ["target_key"])
            changed = []
    if changed:
        RecordLink.objects.bulk_update(changed, ["target_key"])
