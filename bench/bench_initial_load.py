"""Initial load: N F&O customers → Dataverse accounts through `initial_load`, on real workers and the sandbox.

The F&O emulator is seeded with N customers that "exist before go-live"; a flow CustomersV3 → accounts
(upsert by accountnumber) is loaded with the OData transport (cross-company pages) and, with --package,
also through an export package. Printed: records/s from start to the last delivery, the ratio to
dual-write's initial sync (~100 records a minute), and the peak RSS of each process (this one, the
gunicorn serving the hub and sandbox, every Celery worker). Results: bench/results/initial_load.json.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from common import DATABASE_URL, celery_workers, fresh_database, hub_server, print_table, setup_django, write_result

DUAL_WRITE_PER_SECOND = 100 / 60  # dual-write initial sync: about 100 records a minute


def _tree_rss(peaks: dict[str, int]) -> None:
    """The peak RSS (VmHWM, from /proc) of every gunicorn / celery worker process, kept at its highest."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = (proc / "status").read_text()
        except OSError:
            continue
        try:  # only this benchmark's processes: other runs share the machine
            if DATABASE_URL.encode() not in (proc / "environ").read_bytes():
                continue
        except OSError:
            continue
        if "celery" in cmd and " worker" in cmd:
            role = "celery worker"
        elif "gunicorn" in cmd and "icbridge.wsgi" in cmd:
            role = "gunicorn"
        else:
            continue
        hwm = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")), "0")
        name = f"{role} {proc.name}"
        peaks[name] = max(peaks.get(name, 0), int(hwm) * 1024)


def _load(flow, *, records: int, page_size: int, peaks: dict[str, int], timeout: float) -> dict:
    from integrations.bulk import load
    from integrations.models import LoadRun, Message

    started = time.perf_counter()
    run = load.load_start(flow=flow, page_size=page_size)
    read_done = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _tree_rss(peaks)
        run.refresh_from_db()
        delivered = Message.objects.filter(flow=flow, status=Message.Status.DELIVERED).count()
        if run.is_finished and read_done is None:
            read_done = time.perf_counter() - started
        progress = load.load_progress(run=run)
        print(f"\r  {progress['state']}: read {run.read}/{records}, delivered {delivered}", end="", flush=True)
        if run.state != LoadRun.State.RUNNING and delivered + progress["messages_failed"] >= run.written:
            break
        time.sleep(0.5)
    print()
    seconds = time.perf_counter() - started
    failed = Message.objects.filter(flow=flow, status__in=Message.NEEDS_ATTENTION).count()
    if run.state != LoadRun.State.DONE:
        print(f"  load {run.state}: {run.last_error}")
    return {
        "state": run.state,
        "read": run.read,
        "written": run.written,
        "delivered": Message.objects.filter(flow=flow, status=Message.Status.DELIVERED).count(),
        "failed": failed,
        "read_seconds": round(read_done or seconds, 2),
        "seconds": round(seconds, 2),
        "records_per_second": round(records / seconds, 1),
        "ratio_to_dual_write": round(records / seconds / DUAL_WRITE_PER_SECOND, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=100, help="Dataverse target batch size")
    parser.add_argument("--package", action="store_true", help="also load through an F&O export package")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()

    fresh_database()
    setup_django()
    from integrations.models import Flow, System
    from integrations.scenarios.install import templates_install
    from sandbox import finops
    from sandbox.finops.model import ENTITIES
    from sandbox.finops.store import write
    from sandbox.models import EmulatorSubscription

    peaks: dict[str, int] = {}
    results: dict = {}
    with hub_server(workers=2, threads=8) as base:
        templates_install(name="prospect_to_cash", base_url=base)
        # Only the load runs: no template flow, no emulator push (a new account would fire its webhook).
        Flow.objects.update(enabled=False)
        EmulatorSubscription.objects.update(enabled=False)
        source = System.objects.get(kind="finops")
        target = System.objects.get(kind="dataverse")
        System.objects.filter(pk=target.pk).update(batch_size=args.batch_size)
        print(f"seeding {args.records} F&O customers")
        for n in range(args.records):
            values = {
                "CustomerAccount": f"L{n:07d}",
                "OrganizationName": f"Go-live customer {n}",
                "CustomerGroupId": "10",
            }
            write("CustomersV3", ENTITIES["CustomersV3"], "se01", None, values)
        mapping = {"fields": {"accountnumber": {"path": "CustomerAccount"}, "name": {"path": "OrganizationName"}}}
        common = {"entity": "customer", "source": source, "target": target, "target_entity": "accounts",
                  "target_key_fields": ["accountnumber"], "mapping_spec": mapping, "trigger": Flow.Trigger.POLL,
                  "enabled": True}  # fmt: skip
        poll = {"entity": "CustomersV3", "key": ["CustomerAccount"], "company": "SE01"}
        odata_flow = Flow.objects.create(name="Load: customers OData", slug="load-customers-odata",
                                         options={"poll": poll, "echo_of": []}, **common)  # fmt: skip
        with celery_workers(count=args.workers, concurrency=args.concurrency):
            print(f"OData transport, {args.workers}×{args.concurrency} worker slots, pages of {args.page_size}")
            results["odata"] = _load(odata_flow, records=args.records, page_size=args.page_size, peaks=peaks,
                                     timeout=args.timeout)  # fmt: skip
            if args.package:
                finops.data_project("CustomerExport", entities=["CustomersV3"])
                package_flow = Flow.objects.create(
                    name="Load: customers package", slug="load-customers-package",
                    options={"poll": poll, "echo_of": [], "transport": "package", "package_project": "CustomerExport"},
                    **common,
                )  # fmt: skip
                print("package transport")
                results["package"] = _load(package_flow, records=args.records, page_size=args.page_size,
                                           peaks=peaks, timeout=args.timeout)  # fmt: skip
    peaks["bench (this process)"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = {
        "records": args.records,
        "page_size": args.page_size,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "dataverse_batch_size": args.batch_size,
        "dual_write_records_per_second": round(DUAL_WRITE_PER_SECOND, 2),
        **results,
        "peak_rss_mb": {name: round(rss / 2**20, 1) for name, rss in sorted(peaks.items())},
    }
    path = write_result("initial_load", result)
    rows = []
    for transport, figures in results.items():
        rows.append((f"{transport}: records/s", f"{figures['records_per_second']} ({figures['seconds']} s)"))
        rows.append((f"{transport}: × dual-write", f"{figures['ratio_to_dual_write']}"))
        rows.append((f"{transport}: delivered / failed", f"{figures['delivered']} / {figures['failed']}"))
    rows += [(f"peak RSS {name}", f"{mb} MB") for name, mb in result["peak_rss_mb"].items()]
    print_table(rows)
    print(f"written {path}")


if __name__ == "__main__":
    main()
