"""End to end: N intercompany sales orders (5 lines each), from webhook POST to delivered at the emulated F&O.

The shipped intercompany template (AX DK01 purchase order → F&O SE01 sales order) runs against the hub's
own sandbox, fed through the generic webhook endpoint instead of the AX poll. Printed beside it, measured
in the same run: the raw single-row commit rate of the same PostgreSQL, and the emulated F&O's own
throughput when the same orders are written to it directly (same connector, same concurrency).
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from common import celery_workers, fresh_django, hub_server, percentiles, print_table, raw_commit_rate, write_result

SECRET = "bench-webhook-secret"  # noqa: S105 - a throw-away key of the benchmark's own database
ITEMS = [f"IC-{n:04d}" for n in range(1, 200)]


def purchase_order(n: int, prefix: str) -> dict:
    lines = [
        {
            "ItemId": random.choice(ITEMS),
            "PurchQty": random.randint(1, 40),
            "PurchUnit": "Pcs",
            "PurchPrice": round(random.uniform(5, 500), 2),
            "InventSiteId": "1",
            "InventLocationId": "11",
        }
        for _ in range(5)
    ]
    return {
        "PurchId": f"{prefix}{n:06d}",
        "OrderAccount": "IV-SE01",
        "PurchName": "Intercompany replenishment",
        "CurrencyCode": "EUR",
        "DeliveryDate": "2026-12-15",
        "PurchLine": lines,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--direct", type=int, default=1_000, help="orders written to F&O directly, for the ratio")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="slots per worker process")
    parser.add_argument("--senders", type=int, default=16, help="concurrent webhook senders")
    parser.add_argument("--steady-rate", type=float, default=30.0, help="orders/s of the steady phase")
    parser.add_argument("--steady-seconds", type=float, default=20.0)
    args = parser.parse_args()

    fresh_django()
    import requests
    from django.db import connection

    from integrations.models import Flow, InboundEndpoint, Message, RecordLink
    from integrations.pipeline.prepare import mapping_context
    from integrations.protocols.transport import DeliveryRequest
    from integrations.scenarios.install import templates_install
    from integrations.systems import get_connector
    from sandbox.models import EmulatorRecord

    with hub_server(workers=2, threads=8) as base:
        templates_install(name="intercompany", base_url=base)
        flow = Flow.objects.select_related("target", "source", "company_link").get(slug="ic-dk01-po-to-se01-so")
        Flow.objects.filter(pk=flow.pk).update(trigger=Flow.Trigger.WEBHOOK)
        InboundEndpoint.objects.update_or_create(
            flow=flow,
            defaults={
                "auth_type": InboundEndpoint.AuthType.HEADER,
                "credential_name": "X-Icbridge-Key",
                "secret": SECRET,
                "id_pointer": "/PurchId",
                "record_key_pointer": "/PurchId",
                "throttle_rate": "100000/s",
            },
        )

        # 1. The emulated F&O's own throughput: the same orders, mapped, written directly.
        connector = get_connector(flow.target)
        context = mapping_context(flow)
        from integrations import mapping

        direct_orders = [
            mapping.apply(spec=flow.mapping_spec, payload=purchase_order(n, "D"), context=context)
            for n in range(args.direct)
        ]

        def write_direct(order: dict) -> None:
            connector.deliver(
                DeliveryRequest(
                    entity=flow.target_entity,
                    operation=flow.target_operation,
                    payload=order,
                    key={k: order.get(k) for k in flow.target_key_fields},
                    idempotency_key=order["SalesOrderNumber"],
                    company=context["target_company"],
                    options=flow.options,  # header and lines in one change set, as the pipeline sends them
                    exists=False,
                )
            )

        started = time.perf_counter()
        with ThreadPoolExecutor(args.workers * args.concurrency) as pool:
            list(pool.map(write_direct, direct_orders))
        direct_rate = args.direct / (time.perf_counter() - started)
        connection.close()

        # 2. The bridge: webhook POSTs while the workers deliver.
        url = f"{base}/api/ingest/{flow.slug}"
        local = threading.local()
        post_ms: list[float] = []
        rejected: list[int] = []

        def send(n: int) -> None:
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            body = purchase_order(n, "PO")
            t0 = time.perf_counter()
            answer = session.post(url, json=body, headers={"X-Icbridge-Key": SECRET}, timeout=60)
            post_ms.append((time.perf_counter() - t0) * 1000)
            if answer.status_code != 202:
                rejected.append(answer.status_code)

        with celery_workers(args.workers, args.concurrency):
            started = time.perf_counter()
            with ThreadPoolExecutor(args.senders) as pool:
                list(pool.map(send, range(args.orders)))
            posted_in = time.perf_counter() - started
            deadline = started + 600
            while Message.objects.filter(flow=flow, status="delivered").count() < args.orders - len(rejected):
                if time.perf_counter() > deadline:
                    break
                time.sleep(0.25)
            elapsed = time.perf_counter() - started
            burst_done = Message.objects.filter(flow=flow).count()

            # 3. Steady load below capacity: how near to real time is one order?
            steady_count = int(args.steady_rate * args.steady_seconds)
            steady_started = time.perf_counter()
            with ThreadPoolExecutor(args.senders) as pool:
                for n in range(steady_count):
                    pool.submit(send, args.orders + n)
                    time.sleep(max(0.0, steady_started + (n + 1) / args.steady_rate - time.perf_counter()))
            while Message.objects.filter(flow=flow, status="delivered").count() < burst_done + steady_count:
                if time.perf_counter() > steady_started + 120:
                    break
                time.sleep(0.25)
            steady = list(Message.objects.filter(flow=flow, status="delivered").order_by("pk")[burst_done:])
            steady_ms = [(m.delivered_at - m.created_at).total_seconds() * 1000 for m in steady]
            connection.close()

        burst = Message.objects.filter(flow=flow, status="delivered").order_by("pk")[:burst_done]
        delivered = len(burst)
        latencies = [(m.delivered_at - m.created_at).total_seconds() * 1000 for m in burst]
        at_target = EmulatorRecord.objects.filter(
            emulator="finops", entity="SalesOrderHeadersV2", data__CustomersOrderReference__startswith="PO"
        )
        references = list(at_target.values_list("data__CustomersOrderReference", flat=True))
        linked = RecordLink.objects.filter(flow=flow).count()
        statuses = dict(Message.objects.filter(flow=flow).exclude(status="delivered").values_list("status", "id"))

    commit_rate = raw_commit_rate()
    rate = delivered / elapsed
    result = {
        "orders": args.orders,
        "lines_per_order": 5,
        "workers": args.workers,
        "concurrency_per_worker": args.concurrency,
        "senders": args.senders,
        "orders_per_s": round(rate, 1),
        "seconds_for_10000": round(10_000 / rate, 1) if rate else None,
        "ingress_posts_per_s": round(args.orders / posted_in, 1),
        "ingress_ms": percentiles(post_ms),
        "latency_ms": {k: round(v) for k, v in percentiles(latencies).items()},
        "steady_rate_per_s": args.steady_rate,
        "steady_latency_ms": {k: round(v) for k, v in percentiles(steady_ms).items()},
        "raw_commits_per_s": round(commit_rate, 1),
        "target_direct_per_s": round(direct_rate, 1),
        "ratio_to_raw_commit": round(rate / commit_rate, 3),
        "ratio_to_target": round(rate / direct_rate, 3),
        "rejected_posts": len(rejected),
        "delivered": delivered,
        "at_target": len(references),
        "lost": args.orders + steady_count - len(set(references)),
        "duplicated": len(references) - len(set(references)),
        "cross_referenced": linked,
        "not_delivered": statuses,
    }
    write_result("e2e", result)
    print(f"e2e: {args.orders} intercompany orders x 5 lines, {args.workers} workers x {args.concurrency}")
    print_table([
        ("orders/s (POST → delivered)", f"{rate:.1f}"),
        ("10,000 orders take", f"{10_000 / rate:.0f} s" if rate else "-"),
        ("burst latency p50/p95/p99", " / ".join(f"{v:.0f} ms" for v in percentiles(latencies).values())),
        (f"steady {args.steady_rate:g}/s latency p50/p95/p99",
         " / ".join(f"{v:.0f} ms" for v in percentiles(steady_ms).values())),
        ("webhook POST p50 / p99", f"{percentiles(post_ms)['p50']:.0f} / {percentiles(post_ms)['p99']:.0f} ms"),
        ("raw PostgreSQL commits/s", f"{commit_rate:.0f}  (orders/s ÷ commits/s = {rate / commit_rate:.3f})"),
        ("F&O emulator direct orders/s", f"{direct_rate:.1f}  (ratio {rate / direct_rate:.2f})"),
        ("at target / lost / duplicated", f"{len(references)} / {result['lost']} / {result['duplicated']}"),
        ("cross-referenced (RecordLinks)", str(linked)),
    ])  # fmt: skip


if __name__ == "__main__":
    main()
