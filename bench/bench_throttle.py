"""Throttled target: the Dataverse emulator held at its service-protection limit.

Writers upsert accounts through the Dataverse connector as fast as it lets them, first one record per
request, then 100 per $batch. Printed: the share of the allowed request rate actually used, requests
sent before a Retry-After had passed (the connector must send none), and records/s both ways.
The limit is the real rule (N requests per sliding window per app user) with a shorter window, so
the benchmark sees several windows in a minute.
"""

from __future__ import annotations

import argparse
import threading
import time

from common import fresh_database, hub_server, print_table, setup_django, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help="requests allowed per window")
    parser.add_argument("--window", type=int, default=10, help="window in seconds")
    parser.add_argument("--seconds", type=float, default=25.0, help="how long each phase runs")
    parser.add_argument("--writers", type=int, default=4)
    args = parser.parse_args()

    fresh_database()
    setup_django()
    from integrations import errors
    from integrations.models import System
    from integrations.protocols.transport import DeliveryRequest
    from integrations.scenarios.install import templates_install
    from integrations.systems import get_connector
    from sandbox.emulators import dataverse
    from sandbox.models import EmulatorSubscription

    # One gunicorn process: the emulator counts per process, as Dataverse counts per web server.
    with hub_server(workers=1, threads=16) as base:
        templates_install(name="prospect_to_cash", base_url=base)
        # This measures the connector against service protection: the accounts' webhooks back into the same
        # one-process hub would measure ingress as well (bench_ingress does that).
        EmulatorSubscription.objects.filter(emulator="dataverse").update(enabled=False)
        dataverse.configure_service_protection(requests=args.requests, window_seconds=args.window)
        connector = get_connector(System.objects.get(slug="sandbox-dataverse"))
        sent: list[tuple[float, float, int, float]] = []  # (sent at, answered at, status, Retry-After)
        lock = threading.Lock()

        def record(response, *unused, **kwargs) -> None:  # noqa: ANN001 - a requests hook
            answered = time.monotonic()
            retry_after = float(response.headers.get("Retry-After", "0")) if response.status_code == 429 else 0.0
            with lock:
                sent.append((answered - response.elapsed.total_seconds(), answered, response.status_code, retry_after))

        connector.session.hooks["response"].append(record)

        def account(n: int, phase: str) -> DeliveryRequest:
            number = f"{phase}-{n:07d}"
            return DeliveryRequest(
                entity="accounts",
                operation="upsert",
                payload={"name": f"Account {number}", "accountnumber": number},
                key={"accountnumber": number},
                idempotency_key=number,
            )

        def run(phase: str, per_call: int) -> dict:
            counter = iter(range(10**9))
            written = [0]
            stop = time.monotonic() + args.seconds

            def writer() -> None:
                while time.monotonic() < stop:
                    batch = [account(next(counter), phase) for _ in range(per_call)]
                    try:
                        if per_call == 1:
                            connector.deliver(batch[0])
                            outcome = [None]
                        else:
                            outcome = connector.deliver_many(batch)
                    except errors.ThrottledError as exc:
                        time.sleep(exc.retry_after)  # what the pipeline does: not before Retry-After
                        continue
                    ok = sum(1 for result in outcome if not isinstance(result, errors.ConnectorError))
                    with lock:
                        written[0] += ok

            sent.clear()
            started = time.monotonic()
            threads = [threading.Thread(target=writer) for _ in range(args.writers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
            accepted = sum(1 for _, _, status, _ in sent if status != 429)
            throttled = sum(1 for _, _, status, _ in sent if status == 429)
            # On the wire: a request sent after a 429 was answered and before its Retry-After ran out.
            early = sum(
                1
                for sent_at, _, _, _ in sent
                if any(
                    answered < sent_at < answered + wait - 0.01 for _, answered, status, wait in sent if status == 429
                )
            )
            allowed = args.requests * elapsed / args.window
            return {
                "seconds": round(elapsed, 1),
                "records": written[0],
                "records_per_s": round(written[0] / elapsed, 1),
                "requests_accepted": accepted,
                "requests_throttled": throttled,
                "allowed_requests": round(allowed),
                "share_of_allowed_rate": round(accepted / allowed, 3),
                "early_requests": early,
            }

        single = run("S", 1)
        time.sleep(args.window + 1)  # let the window empty before the next phase
        batched = run("B", 100)

    result = {
        "limit": f"{args.requests} requests / {args.window} s per app user",
        "writers": args.writers,
        "single": single,
        "batch": batched,
        "share_of_allowed_rate": single["share_of_allowed_rate"],
        "early_requests": single["early_requests"] + batched["early_requests"],
        "single_records_per_s": single["records_per_s"],
        "batch_records_per_s": batched["records_per_s"],
    }
    write_result("throttle", result)
    print(f"throttle: Dataverse emulator limited to {result['limit']}, {args.writers} writers")
    print_table([
        ("share of allowed rate used", f"{single['share_of_allowed_rate']:.0%} single, "
                                        f"{batched['share_of_allowed_rate']:.0%} $batch"),
        ("requests before Retry-After", str(result["early_requests"])),
        ("429 answers", f"{single['requests_throttled']} single, {batched['requests_throttled']} $batch"),
        ("records/s single requests", f"{single['records_per_s']:.1f}"),
        ("records/s $batch (100)", f"{batched['records_per_s']:.1f}"),
    ])  # fmt: skip


if __name__ == "__main__":
    main()
