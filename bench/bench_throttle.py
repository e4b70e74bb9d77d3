"""Throttled target: the Dataverse emulator held at its service-protection limit, N writer processes.

Writers upsert accounts through the Dataverse connector as fast as it lets them, first one record per
request, then 100 per $batch. --workers N runs them in N processes (each with --writers threads and
its own connector, as N Celery worker processes would), so only the shared governor
(integrations.protocols.governor, in Redis) keeps them from each other's 429s. Printed: the share of
the allowed request rate actually used, requests sent before a Retry-After had passed across all
processes, and records/s both ways.

"Before Retry-After" is counted twice. On the wire (the figure of the one-process runs): a request that
left after some process had a 429 answered and before its Retry-After ran out; with several requests
in flight, one may cross the 429 on its way (let through before the 429 existed, on the wire a few ms
after it). And at the governor: a send let through after a pause was stored, which must be 0.
--max-concurrency 1 leaves nothing in flight to cross. By default the System's rate_limit_per_second
is paced for the emulator's window (governor.rate_within_window: (N - 1) / (window + --jitter)), so no
429 arises and nothing can cross one; --no-pace measures the 429-driven behaviour alone.
The limit is the real rule (N requests per sliding window per app user) with a shorter window, so
the benchmark sees several windows in a minute.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import ENV, ROOT, fresh_database, hub_server, print_table, setup_django, write_result

Sent = tuple[float, float, int, float]  # (sent at, answered at, status, Retry-After), CLOCK_MONOTONIC


def writer_process(phase: str, per_call: int, writers: int, seconds: float, offset: int) -> None:
    """One writer process (--child): report "ready", start at the time read from stdin, print what it sent.

    time.monotonic() is CLOCK_MONOTONIC, one clock for every process of the machine, so the parent
    can line the processes' requests up.
    """
    setup_django()
    from integrations import errors
    from integrations.models import System
    from integrations.protocols.transport import DeliveryRequest
    from integrations.systems import get_connector

    connector = get_connector(System.objects.get(slug="sandbox-dataverse"))
    connector.access_token()  # the token is not part of the measurement
    sent: list[Sent] = []
    lock = threading.Lock()

    def record(response, *unused, **kwargs) -> None:  # noqa: ANN001 - a requests hook
        answered = time.monotonic()
        retry_after = float(response.headers.get("Retry-After", "0")) if response.status_code == 429 else 0.0
        with lock:
            sent.append((answered - response.elapsed.total_seconds(), answered, response.status_code, retry_after))

    connector.session.hooks["response"].append(record)

    # Between which times each pause was stored and each send let through by the governor: a grant asked
    # for after a pause was surely stored, and answered before it can have ended, is the governor's fault.
    # (Bounds, not points: a thread may wait for the GIL for tens of ms on either side of a Redis call.)
    backend = connector.governor.backend
    acquire, pause = backend.acquire, backend.pause
    grants: list[tuple[float, float]] = []
    pauses: list[tuple[float, float, float]] = []

    def timed_acquire(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - wraps the backend as it is
        asked = time.monotonic()
        status, ms = acquire(*args, **kwargs)
        if status == 0:
            granted = time.monotonic()
            with lock:
                grants.append((asked, granted))
        return status, ms

    def timed_pause(identity: str, ms: float) -> None:
        before = time.monotonic()
        pause(identity, ms)
        after = time.monotonic()
        with lock:
            pauses.append((before, after, ms / 1000))

    backend.acquire, backend.pause = timed_acquire, timed_pause

    def account(n: int) -> DeliveryRequest:
        number = f"{phase}-{offset + n:07d}"
        return DeliveryRequest(
            entity="accounts",
            operation="upsert",
            payload={"name": f"Account {number}", "accountnumber": number},
            key={"accountnumber": number},
            idempotency_key=number,
        )

    counter = iter(range(10**9))
    written = [0]
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    time.sleep(max(0.0, start_at - time.monotonic()))
    stop = start_at + seconds

    def writer() -> None:
        while time.monotonic() < stop:
            batch = [account(next(counter)) for _ in range(per_call)]
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

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    finished = time.monotonic()
    report = {"written": written[0], "finished": finished, "sent": sent, "grants": grants, "pauses": pauses}
    print(json.dumps(report), flush=True)


def run_phase(args: argparse.Namespace, phase: str, per_call: int) -> dict:
    """Start --workers writer processes, start them together, and add up what they sent."""
    children = [
        subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", phase, str(per_call), str(args.writers),
             str(args.seconds), str(n * 10**7)],
            cwd=ROOT, env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for n in range(args.workers)
    ]  # fmt: skip
    for child in children:
        for line in child.stdout:
            if line.strip() == "ready":
                break
        else:
            raise RuntimeError(f"a writer process of phase {phase} did not start")
    started = time.monotonic() + 0.2
    for child in children:
        child.stdin.write(f"{started}\n")
        child.stdin.flush()
    reports = [
        json.loads(child.communicate(timeout=args.seconds + 120)[0].strip().splitlines()[-1]) for child in children
    ]
    elapsed = max(report["finished"] for report in reports) - started  # not the processes' exit
    sent: list[Sent] = [tuple(row) for report in reports for row in report["sent"]]
    written = sum(report["written"] for report in reports)
    accepted = sum(1 for _, _, status, _ in sent if status != 429)
    throttled = [(answered, wait) for _, answered, status, wait in sent if status == 429]
    # On the wire, across every process: a request sent after a 429 was answered (in whichever process)
    # and before its Retry-After ran out.
    early = [
        min(sent_at - answered for answered, wait in throttled if answered < sent_at < answered + wait - 0.01)
        for sent_at, _, _, _ in sent
        if any(answered < sent_at < answered + wait - 0.01 for answered, wait in throttled)
    ]
    # Across every process: a send let through after a pause was surely stored and before it can have ended.
    pauses = [pause for report in reports for pause in report["pauses"]]
    let_through = sum(
        1
        for asked, granted in (grant for report in reports for grant in report["grants"])
        if any(after < asked and granted < before + seconds for before, after, seconds in pauses)
    )
    allowed = args.requests * elapsed / args.window
    return {
        "seconds": round(elapsed, 1),
        "records": written,
        "records_per_s": round(written / elapsed, 1),
        "requests_accepted": accepted,
        "requests_throttled": len(throttled),
        "allowed_requests": round(allowed),
        "share_of_allowed_rate": round(accepted / allowed, 3),
        "early_requests": len(early),
        # How long after the nearest 429's answer each early request left (a few ms: it crossed the answer).
        "early_ms_after_429": sorted(round(gap * 1000, 1) for gap in early)[:20],
        "let_through_during_a_stored_pause": let_through,
    }


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        phase, per_call, writers, seconds, offset = sys.argv[2:7]
        writer_process(phase, int(per_call), int(writers), float(seconds), int(offset))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help="requests allowed per window")
    parser.add_argument("--window", type=int, default=10, help="window in seconds")
    parser.add_argument("--seconds", type=float, default=25.0, help="how long each phase runs")
    parser.add_argument("--writers", type=int, default=4, help="writer threads per process")
    parser.add_argument("--workers", type=int, default=1, help="writer processes")
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        help="System.rate_limit_per_second (requests/s); default: paced for the emulator's window",
    )
    parser.add_argument("--no-pace", action="store_true", help="no client-side rate: only the 429s hold the writers")
    parser.add_argument(
        "--jitter",
        type=float,
        default=0.5,
        help="seconds the pacing allows for requests arriving closer together than granted",
    )
    parser.add_argument("--max-concurrency", type=int, default=None, help="System.max_concurrency")
    args = parser.parse_args()
    fresh_database()
    setup_django()
    if args.rate_limit is None and not args.no_pace:
        from integrations.protocols.governor import rate_within_window

        # The token bucket sized from the emulator's limit, so its sliding window is never exceeded.
        args.rate_limit = rate_within_window(
            requests=args.requests, window_seconds=args.window, jitter_seconds=args.jitter
        )

    from integrations.models import System
    from integrations.scenarios.install import templates_install
    from sandbox import dataverse
    from sandbox.models import EmulatorSubscription

    # One gunicorn process: the emulator counts per process, as Dataverse counts per web server.
    with hub_server(workers=1, threads=16) as base:
        templates_install(name="prospect_to_cash", base_url=base)
        # This measures the connector against service protection: the accounts' webhooks back into the same
        # one-process hub would measure ingress as well (bench_ingress does that).
        EmulatorSubscription.objects.filter(emulator="dataverse").update(enabled=False)
        System.objects.filter(slug="sandbox-dataverse").update(
            rate_limit_per_second=args.rate_limit, max_concurrency=args.max_concurrency
        )
        dataverse.configure_service_protection(requests=args.requests, window_seconds=args.window)
        single = run_phase(args, "S", 1)
        time.sleep(args.window + 1)  # let the window empty before the next phase
        batched = run_phase(args, "B", 100)

    result = {
        "limit": f"{args.requests} requests / {args.window} s per app user",
        "workers": args.workers,
        "writers": args.writers,
        "rate_limit_per_second": args.rate_limit,
        "max_concurrency": args.max_concurrency,
        "single": single,
        "batch": batched,
        "share_of_allowed_rate": single["share_of_allowed_rate"],
        "early_requests": single["early_requests"] + batched["early_requests"],
        "let_through_during_a_stored_pause": (
            single["let_through_during_a_stored_pause"] + batched["let_through_during_a_stored_pause"]
        ),
        "single_records_per_s": single["records_per_s"],
        "batch_records_per_s": batched["records_per_s"],
    }
    write_result("throttle", result)
    print(
        f"throttle: Dataverse emulator limited to {result['limit']}, "
        f"{args.workers} process(es) x {args.writers} writers"
        + (f", client-side limit {args.rate_limit:g} requests/s" if args.rate_limit else "")
        + (f", at most {args.max_concurrency} in flight" if args.max_concurrency else "")
    )
    print_table([
        ("share of allowed rate used", f"{single['share_of_allowed_rate']:.0%} single, "
                                        f"{batched['share_of_allowed_rate']:.0%} $batch"),
        ("requests before Retry-After across all processes", f"{result['early_requests']} on the wire "
            f"(ms after the 429: {single['early_ms_after_429'] + batched['early_ms_after_429']}), "
            f"{result['let_through_during_a_stored_pause']} let through during a stored pause"),
        ("429 answers", f"{single['requests_throttled']} single, {batched['requests_throttled']} $batch"),
        ("records/s single requests", f"{single['records_per_s']:.1f}"),
        ("records/s $batch (100)", f"{batched['records_per_s']:.1f}"),
    ])  # fmt: skip


if __name__ == "__main__":
    main()
