"""Run every benchmark, one after another, and print one summary table (`make bench`).

Each script prints its own figures and writes bench/results/<name>.json; this reads those back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from common import RESULTS, ROOT, machine

# (script, results file, figures to summarise as (label, key path))
BENCHMARKS = [
    ("bench_mapping.py", "mapping", [("transforms/s", "transforms_per_second")]),
    (
        "bench_ingress.py",
        "ingress",
        [("ingress req/s", "ingress.requests_per_s"), ("ingress p99 ms", "ingress.latency_ms.p99"),
         ("bare view req/s", "bare.requests_per_s"), ("ratio to bare", "ratio_throughput")],
    ),
    (
        "bench_e2e.py",
        "e2e",
        [("orders/s", "orders_per_s"), ("10k orders in s", "seconds_for_10000"),
         ("burst p50 ms", "latency_ms.p50"), ("burst p99 ms", "latency_ms.p99"),
         ("steady p50 ms", "steady_latency_ms.p50"), ("steady p95 ms", "steady_latency_ms.p95"),
         ("steady p99 ms", "steady_latency_ms.p99"),
         ("ratio to raw commit", "ratio_to_raw_commit"), ("ratio to target", "ratio_to_target"),
         ("lost", "lost"), ("duplicated", "duplicated")],
    ),
    (
        "bench_fuzz.py",
        "fuzz",
        [("fuzz requests", "requests"), ("fuzz stored", "stored"), ("fuzz violations", "violations")],
    ),
    (
        "bench_throttle.py",
        "throttle",
        [("share of allowed rate", "share_of_allowed_rate"), ("sent before Retry-After", "early_requests"),
         ("let through in a pause", "let_through_during_a_stored_pause"),
         ("records/s $batch", "batch_records_per_s"), ("records/s single", "single_records_per_s")],
    ),
]  # fmt: skip


def dig(data: dict, path: str) -> object:
    for part in path.split("."):
        data = data.get(part, {}) if isinstance(data, dict) else {}
    return data if data != {} else "-"


def main() -> int:
    failed = []
    rows: list[tuple[str, str, str]] = []
    started = time.monotonic()
    for script, name, figures in BENCHMARKS:
        print(f"\n=== {script}", flush=True)
        result = subprocess.run([sys.executable, str(ROOT / "bench" / script)], cwd=ROOT, timeout=600, check=False)
        if result.returncode != 0:
            failed.append(script)
            continue
        data = json.loads((RESULTS / f"{name}.json").read_text())
        rows += [(name, label, str(dig(data, key))) for label, key in figures]
    print(f"\n=== summary ({time.monotonic() - started:.0f} s, {machine()['cpus']} cores)")
    for name, label, value in rows:
        print(f"  {name:<10} {label:<26} {value}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
