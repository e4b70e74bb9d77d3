"""Fuzz every kind of webhook endpoint at scale: 50,000 mutated requests, and the counts by answer.

The same mutator and oracle as tests/api/test_webhook_fuzz.py (tests/fuzzing.py): no 5xx, every 2xx
stored, nothing stored on a 4xx. Runs in-process through Django's test client against the benchmark
database (BENCH_DATABASE_URL), so it measures the hub's own handling, not a network.

    .venv/bin/python bench/bench_fuzz.py [--requests 50000] [--seed 1]

Prints the counts and writes bench/results/fuzz.json; exits 1 if any request broke the oracle.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time

from common import fresh_database, print_table, setup_django, write_result

SECRET = "bench-fuzz-secret"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    fresh_database()
    setup_django()
    from django.conf import settings
    from django.test import Client
    from django.test.utils import setup_test_environment

    from integrations.models import Flow, System
    from tests.fuzzing import fuzz, make_endpoints

    logging.getLogger("django.request").setLevel(logging.ERROR)  # one warning per 4xx otherwise
    setup_test_environment()  # the test client's response.exc_info, and no outbound mail
    settings.ALLOWED_HOSTS = ["*"]
    settings.ICBRIDGE_INGRESS_THROTTLE_RATE = "1000000/s"  # input, not rate, is under test
    settings.ICBRIDGE_AUTH_FAILURE_RATE = "1000000/s"
    counter = itertools.count(1)

    def make_system(**fields: object) -> System:
        n = next(counter)
        values = {"name": f"Fuzz system {n}", "slug": f"fuzz-system-{n}", "kind": System.Kind.RECORDER}
        return System.objects.create(**{"base_url": "http://127.0.0.1:9/none", **values, **fields})

    def make_flow(**fields: object) -> Flow:
        n = next(counter)
        values = {"name": f"Fuzz flow {n}", "slug": f"fuzz-flow-{n}", "target_entity": "orders"}
        values.setdefault("source", fields.pop("source", None) or make_system())
        return Flow.objects.create(target=make_system(), **values, **fields)

    endpoints = make_endpoints(make_flow, make_system, SECRET)
    started = time.perf_counter()
    tally = fuzz(Client(raise_request_exception=False), endpoints, args.requests, args.seed, SECRET)
    seconds = time.perf_counter() - started
    statuses = {str(code): count for code, count in sorted(tally.statuses.items())}
    rows = [
        ("requests", f"{tally.requests}"),
        ("messages stored", f"{tally.stored}"),
        ("5xx", f"{sum(n for code, n in tally.statuses.items() if code >= 500)}"),
        ("oracle violations", f"{len(tally.problems)}"),
        ("requests/s", f"{tally.requests / seconds:.0f}"),
        *[(f"HTTP {code}", f"{count}") for code, count in statuses.items()],
    ]
    print("webhook fuzz")
    print_table(rows)
    for problem in tally.problems[:10]:
        print("  !", problem[:300])
    write_result(
        "fuzz",
        {
            "requests": tally.requests,
            "stored": tally.stored,
            "statuses": statuses,
            "violations": len(tally.problems),
            "first_violations": tally.problems[:20],
            "requests_per_s": tally.requests / seconds,
        },
    )
    return 1 if tally.problems else 0


if __name__ == "__main__":
    sys.exit(main())
