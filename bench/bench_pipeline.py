"""Pipeline throughput without ingress: N messages written to the outbox, delivered to the sandbox recorder.

Shows what the message machinery itself costs (claim, per-record lock, attempt, RecordLink), beside the
recorder's own throughput when called directly and the raw commit rate of the same PostgreSQL.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from common import celery_workers, fresh_django, hub_server, percentiles, print_table, raw_commit_rate, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    fresh_django()
    import requests
    from django.db import connection

    from integrations.models import Flow, Message, System
    from integrations.pipeline.ingest import message_ingest
    from sandbox.models import RecorderRecord

    with hub_server() as base:
        source = System.objects.create(name="Bench source", slug="bench-source", kind="recorder", base_url=base)
        target = System.objects.create(
            name="Bench recorder", slug="bench-recorder", kind="recorder", base_url=f"{base}/sandbox/recorder"
        )
        flow = Flow.objects.create(
            name="Bench", slug="bench", entity="salesorder", source=source, target=target,
            target_entity="orders", target_key_fields=["OrderNumber"],
        )  # fmt: skip

        # The target's own throughput, called directly with the same concurrency as the workers.
        direct_count = min(1000, args.messages)
        session = requests.Session()

        def put(n: int) -> None:
            session.put(f"{base}/sandbox/recorder/records/direct/D{n}", json={"OrderNumber": n}, timeout=30)

        started = time.perf_counter()
        with ThreadPoolExecutor(args.workers * args.concurrency) as pool:
            list(pool.map(put, range(direct_count)))
        direct_rate = direct_count / (time.perf_counter() - started)

        for n in range(args.messages):
            message_ingest(
                flow=flow,
                payload={"OrderNumber": f"SO-{n}", "Lines": [{"Item": f"I{i}", "Qty": i} for i in range(5)]},
                idempotency_key=f"bench-{n}",
                source_record_key=f"SO-{n}",
            )
        connection.close()
        started = time.perf_counter()
        with celery_workers(args.workers, args.concurrency):
            while Message.objects.filter(status="delivered").count() < args.messages:
                if time.perf_counter() - started > 600:
                    raise SystemExit("not all messages were delivered within 10 minutes")
                time.sleep(0.5)
            elapsed = time.perf_counter() - started
        rate = args.messages / elapsed
        delivered = RecorderRecord.objects.filter(entity="orders").count()
        latencies = [
            (d - c).total_seconds() * 1000 for c, d in Message.objects.values_list("created_at", "delivered_at")
        ]
    commit_rate = raw_commit_rate()
    result = {
        "messages": args.messages,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "messages_per_s": round(rate, 1),
        "target_direct_per_s": round(direct_rate, 1),
        "raw_commits_per_s": round(commit_rate, 1),
        "ratio_to_target": round(rate / direct_rate, 3),
        "ratio_to_raw_commit": round(rate / commit_rate, 3),
        "delivered_at_target": delivered,
        "queue_wait_ms": percentiles(latencies),
    }
    write_result("pipeline", result)
    print(f"pipeline: {args.messages} messages, {args.workers} workers x {args.concurrency}")
    print_table([
        ("delivered msg/s", f"{rate:.0f}"),
        ("target direct req/s", f"{direct_rate:.0f}  (ratio {rate / direct_rate:.2f})"),
        ("raw PostgreSQL commits/s", f"{commit_rate:.0f}  (ratio {rate / commit_rate:.2f})"),
        ("delivered at target", f"{delivered} of {args.messages}"),
    ])  # fmt: skip


if __name__ == "__main__":
    main()
