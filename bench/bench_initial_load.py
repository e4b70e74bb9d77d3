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
from typing import Any

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
    from django.db.models import Count

    from integrations.bulk import load
    from integrations.models import LoadRun, Message

    started = time.perf_counter()
    run = load.load_start(flow=flow, page_size=page_size)
    read_done = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _tree_rss(peaks)
        run.refresh_from_db()
        if run.is_finished and read_done is None:
            read_done = time.perf_counter() - started
        # One aggregate every 2 s (load_progress counts over a JSON header): the poll must not load the box.
        counts = dict(Message.objects.filter(flow=flow).values_list("status").annotate(n=Count("pk")))
        delivered = counts.get(Message.Status.DELIVERED, 0)
        stuck = sum(counts.get(status, 0) for status in Message.NEEDS_ATTENTION)
        print(f"\r  {run.state}: read {run.read}/{records}, delivered {delivered}", end="", flush=True)
        if run.state != LoadRun.State.RUNNING and delivered + stuck >= run.written:
            break
        time.sleep(2)
    print()
    seconds = time.perf_counter() - started
    failed = Message.objects.filter(flow=flow, status__in=Message.NEEDS_ATTENTION).count()
    delivered = Message.objects.filter(flow=flow, status=Message.Status.DELIVERED).count()
    if run.state != LoadRun.State.DONE:
        print(f"  load {run.state}: {run.last_error}")
    # A run stopped at --timeout reports the rate it reached and what the whole load would take at it.
    rate = delivered / seconds
    return {
        "state": run.state,
        "complete": delivered + failed >= records,
        "read": run.read,
        "written": run.written,
        "delivered": delivered,
        "failed": failed,
        "read_seconds": round(read_done or seconds, 2),
        "read_per_second": round(run.read / (read_done or seconds), 1),
        "seconds": round(seconds, 2),
        "records_per_second": round(rate, 1),
        "projected_seconds": round(records / rate, 1) if rate else None,
        "ratio_to_dual_write": round(rate / DUAL_WRITE_PER_SECOND, 1),
        "target_requests_approx": _bulk_requests(flow),
        **_allowance(flow, seconds),
    }


# Dataverse's default service protection, per user: 6,000 requests and 1,200,000 ms of combined execution
# time per 300 s ("Service protection API limits", MS Learn).
REQUESTS_PER_SECOND = 6000 / 300
EXECUTION_MS_PER_SECOND = 1_200_000 / 300


def _allowance(flow, seconds: float) -> dict[str, float]:
    """The share of the allowed request rate and of the execution-time allowance the load used.

    A bulk message carries hundreds of records as one request, so the request share is tiny; the limit
    a bulk load can reach is execution time. Each send's duration as the hub timed it (its Attempt rows
    share one started_at and duration: the largest is the call, read-back included) is an upper bound of
    the server's execution time for it.
    """
    from integrations.models import Attempt

    sends: dict[tuple[str, Any], int] = {}  # as _bulk_requests groups them: a send's rows start within a second
    rows = Attempt.objects.filter(message__flow=flow).values_list("request_summary", "started_at", "duration_ms")
    for summary, started, ms in rows.iterator():
        call = (summary, started.replace(microsecond=0))
        sends[call] = max(sends.get(call, 0), ms)
    durations = list(sends.values())
    return {
        "requests_sent": len(durations),
        "request_rate_share_percent": round(100 * len(durations) / (seconds * REQUESTS_PER_SECOND), 2),
        "execution_time_share_percent_upper_bound": round(
            100 * sum(durations) / (seconds * EXECUTION_MS_PER_SECOND), 1
        ),
    }


def _bulk_requests(flow) -> dict[str, int]:
    """Requests the target answered for the load, by kind: one bulk message (UpsertMultiple) carries many records."""
    from integrations.models import Attempt

    summaries = Attempt.objects.filter(message__flow=flow).values_list("request_summary", "started_at")
    calls = {(summary, started.replace(microsecond=0)) for summary, started in summaries if summary}
    kinds: dict[str, int] = {}
    for summary, _ in calls:
        kind = "UpsertMultiple" if "UpsertMultiple" in summary else summary.split(" ", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def _seed(records: int) -> None:
    """N customers in the F&O emulator's store, the rows store.write makes, 5,000 per INSERT."""
    from sandbox.finops.model import ENTITIES
    from sandbox.finops.store import EMULATOR, record_key
    from sandbox.models import EmulatorRecord
    from sandbox.models.store import next_change_seq

    entity = ENTITIES["CustomersV3"]
    for start in range(0, records, 5000):
        rows = []
        for n in range(start, min(start + 5000, records)):
            data = {"CustomerAccount": f"L{n:07d}", "OrganizationName": f"Go-live customer {n}",
                    "CustomerGroupId": "10", "dataAreaId": "se01"}  # fmt: skip
            seq = next_change_seq()
            rows.append(EmulatorRecord(emulator=EMULATOR, entity="CustomersV3", company="se01",
                                       key=record_key(entity, data), data=data, version=seq % 2_000_000_000,
                                       change_seq=seq))  # fmt: skip
        EmulatorRecord.objects.bulk_create(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=200, help="Dataverse target batch size (records a request)")
    parser.add_argument("--package", action="store_true", help="also load through an F&O export package")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()

    fresh_database()
    setup_django()
    from integrations.models import Flow, System
    from integrations.scenarios.install import templates_install
    from sandbox import finops
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
        _seed(args.records)
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
        rows.append((f"{transport}: read/s", f"{figures['read_per_second']} ({figures['read_seconds']} s)"))
        rows.append((f"{transport}: delivered/s", f"{figures['records_per_second']} ({figures['seconds']} s)"))
        if not figures["complete"]:
            rows.append((f"{transport}: stopped at --timeout, projected", f"{figures['projected_seconds']} s"))
        rows.append((f"{transport}: target requests", str(figures["target_requests_approx"])))
        rows.append((f"{transport}: share of the allowed request rate", f"{figures['request_rate_share_percent']} %"))
        rows.append(
            (
                f"{transport}: share of the execution-time allowance (upper bound)",
                f"{figures['execution_time_share_percent_upper_bound']} %",
            )
        )
        rows.append((f"{transport}: × dual-write", f"{figures['ratio_to_dual_write']}"))
        rows.append((f"{transport}: delivered / failed", f"{figures['delivered']} / {figures['failed']}"))
    rows += [(f"peak RSS {name}", f"{mb} MB") for name, mb in result["peak_rss_mb"].items()]
    print_table(rows)
    print(f"written {path}")


if __name__ == "__main__":
    main()
