"""RecordLink target keys in the target's normal form (integrations.systems.<kind>.keys).

Links written before had F&O keys in the case the mapping sent after an update (dataAreaId='SE01')
and in the case F&O answered after a create ('se01'); echo screening compares keys exactly, so our
own writes came back as changes. Rewrites each link's target_key in the form the target answers with.
"""

from __future__ import annotations

from django.db import migrations


def normalise(apps, schema_editor) -> None:
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


class Migration(migrations.Migration):
    dependencies = [("integrations", "0007_flow_system_paused")]

    operations = [migrations.RunPython(normalise, migrations.RunPython.noop)]
