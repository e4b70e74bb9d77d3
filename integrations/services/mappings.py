"""Mapping specs of flows: save a new version, preview a transform, import and export value maps."""

from __future__ import annotations

import csv
import io
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from integrations import mapping
from integrations.mapping import valuemaps  # noqa: F401  (connects the cache-clearing signals)
from integrations.models import Flow, MappingVersion, ValueMap, ValueMapEntry
from integrations.services.audit import audit_record


def flow_mapping_save(*, flow: Flow, spec: dict[str, Any], actor: Any, comment: str = "") -> MappingVersion:
    """Validate a spec and make it the flow's current mapping as a new version.

    1. Refuse it with one message per problem (each naming its field) if it does not validate.
    2. Lock the flow; if its current spec was never recorded (a flow made before versioning,
       or created with a spec), record it first, so the previous version is always kept.
    3. Saving the spec that is already current changes nothing and returns that version.
    4. Otherwise write version N+1, point the flow at it and audit who did it.
    """
    problems = mapping.validate_spec(spec)
    if problems:
        raise ValidationError(problems)
    comment = comment[:200]
    user = actor if actor is not None and actor.is_authenticated else None
    with transaction.atomic():
        locked = Flow.objects.select_for_update().get(pk=flow.pk)
        latest = locked.mapping_versions.order_by("-version").first()
        if latest is None and locked.mapping_spec == spec:
            number = locked.mapping_version
        elif (
            latest is not None
            and latest.spec == spec == locked.mapping_spec
            and latest.version == locked.mapping_version
        ):
            return latest
        else:
            if latest is None:
                latest = MappingVersion.objects.create(
                    flow=locked,
                    version=locked.mapping_version,
                    spec=locked.mapping_spec,
                    comment="in use before versioning",
                )
            number = max(latest.version, locked.mapping_version) + 1
        version = MappingVersion.objects.create(
            flow=locked, version=number, spec=spec, created_by=user, comment=comment
        )
        Flow.objects.filter(pk=locked.pk).update(mapping_spec=spec, mapping_version=number)
        _audit(actor, locked, version, comment)
    # The caller's instance shows the new current version too.
    flow.mapping_spec, flow.mapping_version = spec, number
    return version


def _audit(actor: Any, flow: Flow, version: MappingVersion, comment: str) -> None:
    audit_record(
        actor=actor,
        action="mapping_save",
        obj=flow,
        reason=comment,
        details={"version": version.version, "flow": flow.slug},
    )


# --- value maps as CSV ---------------------------------------------------------------------------

CSV_HEADER = ("source_value", "target_value")


def value_map_export_csv(*, value_map: ValueMap) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for source, target in value_map.entries.order_by("source_value").values_list("source_value", "target_value"):
        writer.writerow([source, target])
    return out.getvalue()


def value_map_import_csv(*, value_map: ValueMap, text: str, actor: Any, replace: bool = False) -> dict[str, int]:
    """Load entries from CSV (source_value,target_value); all rows or none.

    Raises ValidationError listing every bad row by its line number. With replace=True
    entries missing from the file are deleted; otherwise they are kept.
    """
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    if not rows:
        raise ValidationError(["the file is empty; expected a header row source_value,target_value"])
    header = tuple(cell.strip().lower() for cell in rows[0])
    if header[:2] != CSV_HEADER or len(header) != 2:
        raise ValidationError([f"line 1: the header must be source_value,target_value, not {','.join(rows[0])}"])
    problems: list[str] = []
    entries: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2:
            problems.append(f"line {line}: expected 2 columns (source_value,target_value), found {len(row)}")
            continue
        source, target = row[0].strip(), row[1].strip()
        if not source:
            problems.append(f"line {line}: source_value is empty")
        elif len(source) > 200 or len(target) > 200:
            problems.append(f"line {line}: values are limited to 200 characters")
        elif source in entries:
            problems.append(f"line {line}: source_value {source!r} appears twice")
        else:
            entries[source] = target
    if problems:
        raise ValidationError(problems)
    with transaction.atomic():
        existing = dict(value_map.entries.values_list("source_value", "target_value"))
        created = updated = deleted = 0
        for source, target in entries.items():
            if source not in existing:
                ValueMapEntry.objects.create(value_map=value_map, source_value=source, target_value=target)
                created += 1
            elif existing[source] != target:
                ValueMapEntry.objects.filter(value_map=value_map, source_value=source).update(target_value=target)
                updated += 1
        if replace:
            deleted, _ = value_map.entries.exclude(source_value__in=list(entries)).delete()
        value_map.save(update_fields=["updated_at"])  # clears the engine's cached table in this process
        counts = {"created": created, "updated": updated, "deleted": deleted}
        audit_record(actor=actor, action="value_map_import", obj=value_map, details=counts)
    return counts
