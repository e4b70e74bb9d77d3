"""End to end: N intercompany sales orders (5 lines each), from webhook POST to delivered at the emulated F&O.

The shipped intercompany template (AX DK01 purchase order → F&O SE01 sales order) runs against the
sandbox, fed through the generic webhook endpoint instead of the AX poll. The emulators are served by a
gunicorn of their own (bench/emulator_urls.py) and the hub by another with no sandbox mounted, so the
CPU of the bridge (hub gunicorn + Celery workers, from /proc) is told apart from the target's. Printed
beside it, measured in the same run: the raw single-row commit rate of the same PostgreSQL, and the
emulated F&O's own throughput when the same orders are written to it directly (same connector, same
concurrency), with the emulator's CPU per order in both phases.
"""

from __future__ import annotations

import argparse
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from common import (
    ROLE,
    celery_workers,
    cpu_seconds,
    cpu_used,
    emulator_server,
    fresh_django,
    hub_server,
    percentiles,
    postgres_cpu_seconds,
    print_table,
    raw_commit_rate,
    write_result,
)

SECRET = "bench-webhook-secret"  # noqa: S105 - a throw-away key of the benchmark's own database


def released_items(connector: object, company: str) -> list[str]:
    """Release the demo's items in the target company, as its F&O users do; the emulated F&O refuses a line
    naming an unreleased item. The item numbers."""
    from integrations.scenarios import traffic

    report = traffic.TrafficReport()
    traffic.finops_items(connector=connector, company=company, report=report)
    if report.failed:
        raise SystemExit(f"cannot release the items: {report.failed}")
    return [number for number, _unit, _price in traffic.ITEMS]


def purchase_order(n: int, prefix: str, items: list[str]) -> dict:
    lines = [
        {
            "ItemId": random.choice(items),
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
    parser.add_argument(
        "--batch-size", type=int, default=0, help="orders per $batch to F&O (0: the template's System.batch_size)"
    )
    args = parser.parse_args()

    fresh_django()
    import requests
    from django.db import connection

    from integrations.models import Flow, InboundEndpoint, Message, RecordLink, System
    from integrations.pipeline.prepare import mapping_context
    from integrations.protocols.transport import DeliveryRequest
    from integrations.scenarios.install import templates_install
    from integrations.systems import get_connector
    from sandbox.models import EmulatorRecord, EmulatorSubscription

    roles = ("hub", "worker", "emulator")
    hub = {"ICBRIDGE_SANDBOX": "false", ROLE: "hub"}  # the hub serves no emulator: its CPU is the bridge's
    with (
        emulator_server(workers=2, threads=8, **{ROLE: "emulator"}) as target_base,
        hub_server(workers=2, threads=8, log_name="hub-gunicorn", **hub) as base,
    ):
        # The systems (F&O, AX, Azure AD) live at the emulator's server; the emulators' events still go to the hub.
        templates_install(name="intercompany", base_url=target_base)
        for subscription in EmulatorSubscription.objects.filter(url__startswith=target_base):
            subscription.url = base + subscription.url.removeprefix(target_base)
            subscription.save(update_fields=["url"])
        flow = Flow.objects.select_related("target", "source", "company_link").get(slug="ic-dk01-po-to-se01-so")
        Flow.objects.filter(pk=flow.pk).update(trigger=Flow.Trigger.WEBHOOK)
        if args.batch_size:  # a $batch the emulator answers within the System's timeout on a loaded box
            System.objects.filter(pk=flow.target_id).update(batch_size=args.batch_size)
            flow.target.refresh_from_db()
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
        items = released_items(connector, context["target_company"])
        from integrations import mapping

        direct_orders = [
            mapping.apply(spec=flow.mapping_spec, payload=purchase_order(n, "D", items), context=context)
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

        cpu_before, pg_before = cpu_seconds("emulator"), postgres_cpu_seconds()
        started = time.perf_counter()
        with ThreadPoolExecutor(args.workers * args.concurrency) as pool:
            list(pool.map(write_direct, direct_orders))
        direct_rate = args.direct / (time.perf_counter() - started)
        direct_emulator_ms = cpu_used(cpu_before, cpu_seconds("emulator")) * 1000 / args.direct
        direct_postgres_ms = cpu_used(pg_before, postgres_cpu_seconds()) * 1000 / args.direct
        connection.close()

        # 2. The bridge: webhook POSTs while the workers deliver.
        url = f"{base}/api/ingest/{flow.slug}"
        local = threading.local()
        post_ms: list[float] = []
        rejected: list[int] = []

        def send(n: int) -> None:
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            body = purchase_order(n, "PO", items)
            t0 = time.perf_counter()
            answer = session.post(url, json=body, headers={"X-Icbridge-Key": SECRET}, timeout=60)
            post_ms.append((time.perf_counter() - t0) * 1000)
            if answer.status_code != 202:
                rejected.append(answer.status_code)

        with celery_workers(args.workers, args.concurrency, **{ROLE: "worker"}):
            # The workers' start (imports, connections) is not the orders' cost: sample once they answer.
            time.sleep(5)
            cpu_before = {role: cpu_seconds(role) for role in roles}
            pg_before = postgres_cpu_seconds()
            bench_before = os.times()
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
            cpu_burst = {role: cpu_used(cpu_before[role], cpu_seconds(role)) for role in roles}
            # PostgreSQL serves hub and emulator alike (one database): its backends are counted apart, not split.
            cpu_burst["postgres"] = cpu_used(pg_before, postgres_cpu_seconds())
            bench_after = os.times()
            cpu_burst["bench (senders, polling)"] = (
                bench_after.user + bench_after.system - bench_before.user - bench_before.system
            )
            load_average = os.getloadavg()
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
    per_order_ms = {role: round(seconds * 1000 / max(delivered, 1), 2) for role, seconds in cpu_burst.items()}
    hub_ms = per_order_ms["hub"] + per_order_ms["worker"]
    result = {
        "orders": args.orders,
        "lines_per_order": 5,
        "workers": args.workers,
        "concurrency_per_worker": args.concurrency,
        "batch_size": flow.target.batch_size,
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
        "cpu_seconds_burst": {role: round(seconds, 2) for role, seconds in cpu_burst.items()},
        "cpu_ms_per_order": {**per_order_ms, "hub_total": round(hub_ms, 2)},
        "emulator_cpu_ms_per_direct_order": round(direct_emulator_ms, 2),
        "postgres_cpu_ms_per_direct_order": round(direct_postgres_ms, 2),
        "load_average_after_burst": [round(v, 2) for v in load_average],
        "rejected_posts": len(rejected),
        "delivered": delivered,
        "at_target": len(references),
        "lost": args.orders + steady_count - len(set(references)),
        "duplicated": len(references) - len(set(references)),
        "cross_referenced": linked,
        "not_delivered": statuses,
    }
    write_result("e2e", result)
    print(
        f"e2e: {args.orders} intercompany orders x 5 lines, {args.workers} workers x {args.concurrency}, "
        f"batches of {flow.target.batch_size}"
    )
    print_table([
        ("orders/s (POST → delivered)", f"{rate:.1f}"),
        ("10,000 orders take", f"{10_000 / rate:.0f} s" if rate else "-"),
        ("burst latency p50/p95/p99", " / ".join(f"{v:.0f} ms" for v in percentiles(latencies).values())),
        (f"steady {args.steady_rate:g}/s latency p50/p95/p99",
         " / ".join(f"{v:.0f} ms" for v in percentiles(steady_ms).values())),
        ("webhook POST p50 / p99", f"{percentiles(post_ms)['p50']:.0f} / {percentiles(post_ms)['p99']:.0f} ms"),
        ("raw PostgreSQL commits/s", f"{commit_rate:.0f}  (orders/s ÷ commits/s = {rate / commit_rate:.3f})"),
        ("F&O emulator direct orders/s", f"{direct_rate:.1f}  (bridge/direct ratio {rate / direct_rate:.2f})"),
        ("hub CPU ms per delivered order", f"{hub_ms:.1f}  (web {per_order_ms['hub']:.1f} + workers "
                                           f"{per_order_ms['worker']:.1f})"),
        ("emulator CPU ms per order", f"{per_order_ms['emulator']:.1f} bridged, {direct_emulator_ms:.1f} direct"),
        ("PostgreSQL CPU ms per order (hub + emulator)",
         f"{per_order_ms['postgres']:.1f} bridged, {direct_postgres_ms:.1f} direct"),
        ("bench process CPU ms per order", f"{per_order_ms['bench (senders, polling)']:.1f}  (the senders)"),
        ("load average after the burst", " / ".join(f"{v:.2f}" for v in load_average)),
        ("at target / lost / duplicated", f"{len(references)} / {result['lost']} / {result['duplicated']}"),
        ("cross-referenced (RecordLinks)", str(linked)),
    ])  # fmt: skip


if __name__ == "__main__":
    main()
