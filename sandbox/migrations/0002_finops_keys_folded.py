"""F&O rows written before keys compared case-insensitively are stored under their folded (upper-case) key,
as sandbox.finops.store.record_key now gives it; a row whose folded key another row has already keeps its own."""

from django.db import migrations

# The data entities of sandbox.finops.model.ENTITIES when keys were folded (internal rows start with "$").
ENTITIES = (
    "CustomersV3", "ReleasedProductsV2", "WarehousesOnHandV2", "SalesOrderHeadersV2", "SalesOrderLines",
    "PurchaseOrderHeadersV2", "PurchaseOrderLinesV2", "SalesInvoiceHeadersV2", "ContactPersonsV2",
    "SalesQuotationHeadersV2", "SalesQuotationLines", "SalesOrderHolds", "VendorInvoiceHeaders", "UnitsOfMeasure",
)  # fmt: skip


def fold_keys(apps, schema_editor):
    record = apps.get_model("sandbox", "EmulatorRecord")
    rows = record.objects.filter(emulator="finops", entity__in=ENTITIES)
    for row in rows.iterator(chunk_size=2000):
        folded = row.key.upper()
        if folded == row.key:
            continue
        if rows.filter(entity=row.entity, company=row.company, key=folded).exists():
            continue
        record.objects.filter(pk=row.pk).update(key=folded)


class Migration(migrations.Migration):
    dependencies = [("sandbox", "0001_initial")]

    operations = [migrations.RunPython(fold_keys, migrations.RunPython.noop)]
