"""Dataverse → F&O through a data package import: N accounts → CustomersV3, beside the OData path.

The Dataverse emulator is seeded with N accounts that "exist before go-live"; a flow accounts →
CustomersV3 (upsert by dataAreaId + CustomerAccount) is loaded through `initial_load` on real workers:
with `transport: package` each drained batch is one ImportFromPackage (GetAzureWriteUrl, upload,
ImportFromPackage, GetExecutionSummaryStatus, GetExecutionErrors); with `transport: odata` each batch
is an OData $batch of one change set per record. The OData path is slower, so it can be run on a
smaller N (--odata-records) and its rate printed beside the package's, said so. Results:
bench/results/package_import[_<N>].json. The load loop and its figures are bench_initial_load's. The
database and Redis are BENCH_DATABASE_URL / BENCH_REDIS_URL (bench/common.py: dropped and migrated first).
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import uuid

from bench_initial_load import DUAL_WRITE_PER_SECOND, _load
from common import celery_workers, fresh_django, hub_server, print_table, write_result

PROJECT = "CustomerImport"


def _seed(records: int, prefix: str) -> None:
    """N accounts in the Dataverse emulator's store, the rows its write() makes, 5,000 per INSERT."""
    from django.utils import timezone

    from sandbox.dataverse.tables import EMULATOR
    from sandbox.models import EmulatorRecord
    from sandbox.models.store import next_change_seq

    now = timezone.now().isoformat(timespec="seconds").replace("+00:00", "Z")
    for start in range(0, records, 5000):
        rows = []
        for n in range(start, min(start + 5000, records)):
            record_id, seq = str(uuid.uuid4()), next_change_seq()
            data = {"accountid": record_id, "accountnumber": f"{prefix}{n:07d}", "name": f"Go-live account {n}",
                    "createdon": now, "modifiedon": now, "versionnumber": seq // 1000}  # fmt: skip
            rows.append(EmulatorRecord(emulator=EMULATOR, entity="accounts", key=record_id, data=data,
                                       version=seq // 1000, change_seq=seq))  # fmt: skip
        EmulatorRecord.objects.bulk_create(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=10_000, help="accounts loaded through the package import")
    parser.add_argument("--odata-records", type=int, default=2_000, help="accounts loaded through OData (0: skip)")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--batch-size", type=int, default=1000, help="F&O batch size of the package path (rows a package)"
    )
    parser.add_argument("--odata-batch-size", type=int, default=100, help="F&O batch size of the OData path ($batch)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per transport; the rest is projected")
    parser.add_argument("--name", default="", help="result name (default: package_import_<records>)")
    args = parser.parse_args()

    fresh_django()
    from integrations.models import Flow, System
    from integrations.scenarios.install import templates_install
    from sandbox import finops
    from sandbox.dataverse.tables import EMULATOR
    from sandbox.models import EmulatorRecord, EmulatorSubscription

    peaks: dict[str, int] = {}
    results: dict = {}
    runs = [("package", args.records, args.batch_size, "P"), ("odata", args.odata_records, args.odata_batch_size, "O")]
    with hub_server(workers=2, threads=8) as base:
        templates_install(name="prospect_to_cash", base_url=base)
        # Only the load runs: no template flow, no emulator push (a new customer would fire its business event).
        Flow.objects.update(enabled=False)
        EmulatorSubscription.objects.update(enabled=False)
        source, target = System.objects.get(kind="dataverse"), System.objects.get(kind="finops")
        link = Flow.objects.get(slug="p2c-accounts-sales-to-fo").company_link
        finops.data_project(PROJECT, entities=["CustomersV3"], direction="import")
        mapping = {"fields": {"dataAreaId": {"context": "target_company", "required": True},
                              "CustomerAccount": {"path": "accountnumber", "required": True},
                              "OrganizationName": {"path": "name", "required": True},
                              "CustomerGroupId": {"const": "30"}}}  # fmt: skip
        with celery_workers(count=args.workers, concurrency=args.concurrency):
            for transport, records, batch_size, prefix in runs:
                if not records:
                    continue
                print(f"seeding {records} Dataverse accounts")
                _seed(records, prefix)
                System.objects.filter(pk=target.pk).update(batch_size=batch_size)
                # Each run reads only its own accounts (the previous run's are deleted below).
                options = {
                    "poll": {"entity": "accounts", "key": ["accountnumber"]},
                    "echo_of": [],
                    "transport": transport,
                    "package_project": PROJECT if transport == "package" else "",
                }
                flow = Flow.objects.create(
                    name=f"Load: accounts → customers ({transport})", slug=f"load-accounts-{transport}",
                    entity="account", source=source, target=target, company_link=link, target_entity="CustomersV3",
                    target_operation="upsert", target_key_fields=["dataAreaId", "CustomerAccount"],
                    mapping_spec=mapping, trigger=Flow.Trigger.POLL, enabled=True, options=options,
                )  # fmt: skip
                print(f"{transport}: {records} accounts, batches of {batch_size}, "
                      f"{args.workers}×{args.concurrency} worker slots, pages of {args.page_size}")  # fmt: skip
                results[transport] = {"records": records, "batch_size": batch_size, **_load(
                    flow, records=records, page_size=args.page_size, peaks=peaks, timeout=args.timeout)}  # fmt: skip
                EmulatorRecord.objects.filter(emulator=EMULATOR, entity="accounts").delete()
                Flow.objects.filter(pk=flow.pk).update(enabled=False)
        at_target = {
            prefix: EmulatorRecord.objects.filter(
                emulator="finops", entity="CustomersV3", data__CustomerAccount__startswith=prefix
            ).count()
            for _, _, _, prefix in runs
        }
    peaks["bench (this process)"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    load = os.getloadavg()
    for (transport, *_), prefix in zip(runs, at_target, strict=True):
        if transport in results:
            results[transport]["customers_at_target"] = at_target[prefix]
    result = {
        "records": args.records,
        "odata_records": args.odata_records,
        "page_size": args.page_size,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "load_average_at_end": [round(v, 2) for v in load],
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dual_write_records_per_second": round(DUAL_WRITE_PER_SECOND, 2),
        **results,
        "peak_rss_mb": {name: round(rss / 2**20, 1) for name, rss in sorted(peaks.items())},
    }
    path = write_result(args.name or f"package_import_{args.records}", result)
    rows = []
    for transport, figures in results.items():
        n = figures["records"]
        rows.append((f"{transport}: records (batch)", f"{n} ({figures['batch_size']} a request)"))
        rows.append((f"{transport}: read/s", f"{figures['read_per_second']} ({figures['read_seconds']} s)"))
        rows.append((f"{transport}: delivered/s", f"{figures['records_per_second']} ({figures['seconds']} s)"))
        if not figures["complete"]:
            rows.append((f"{transport}: stopped at --timeout, projected", f"{figures['projected_seconds']} s for {n}"))
        rows.append((f"{transport}: target requests", str(figures["target_requests_approx"])))
        rows.append((f"{transport}: delivered / failed / at F&O", f"{figures['delivered']} / {figures['failed']} / "
                     f"{figures['customers_at_target']}"))  # fmt: skip
    if "package" in results and "odata" in results and results["odata"]["records_per_second"]:
        ratio = results["package"]["records_per_second"] / results["odata"]["records_per_second"]
        note = "" if args.odata_records == args.records else f" (OData measured on {args.odata_records} records)"
        rows.append(("package ÷ OData records/s", f"{ratio:.1f}{note}"))
    rows += [(f"peak RSS {name}", f"{mb} MB") for name, mb in result["peak_rss_mb"].items()]
    rows.append(("load average (1/5/15 min) at end", " / ".join(f"{v:.2f}" for v in load)))
    print_table(rows)
    print(f"written {path}")


if __name__ == "__main__":
    main()
