"""Sends per second through the outbox against a loopback ESP with a configured rate limit.

    python benchmarks/delivery.py                          # 10,000 sends, webhook, 250/s, 5% failures
    python benchmarks/delivery.py --esp klaviyo --rate 300 --sends 3000
    python benchmarks/delivery.py --chunk 125                # rounds of 125 rows, not the sender's default

The loopback server (tests/delivery/fake_esp.py) speaks the chosen ESP's API and
fails 5% of deliveries at random (429 with Retry-After, 500, 503, a connection
dropped before answering, and one dropped after accepting). It counts each send
id it actually delivered, deduplicating by idempotency key as ESPs do.
Targets: request rate >= 95% of the limit, 0 duplicates, 0 losses.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dagster_project.delivery.outbox import enqueue_batch, send_id_for, state_counts  # noqa: E402
from dagster_project.delivery.policy import RetryPolicy, SendPolicy  # noqa: E402
from dagster_project.delivery.sender import default_chunk_size, run_export  # noqa: E402
from dagster_project.ingest.contract import create_raw_schema  # noqa: E402
from dagster_project.resources.warehouse import DuckDBWarehouse  # noqa: E402
from tests.delivery.conftest import add_customers, drafts, make_esp, noon_utc, ticking_noon  # noqa: E402
from tests.delivery.fake_esp import FakeEsp  # noqa: E402


def bench(esp_name: str, sends: int, rate: float, failure_rate: float, workers: int, chunk: int | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="nextbest-bench-") as tmp:
        warehouse = DuckDBWarehouse(path=str(Path(tmp) / "bench.duckdb"))
        create_raw_schema(warehouse)
        add_customers(warehouse, sends)
        ids = [f"c{i}" for i in range(sends)]
        enqueue_batch(warehouse, "bench", drafts("bench", ids), now=noon_utc() - timedelta(hours=1))
        tls = Path(tmp) / "tls" if esp_name == "customerio" else None
        with FakeEsp(esp_name, failure_rate=failure_rate, seed=42, tls_dir=tls) as server:
            # One bucket at `rate` sends/s with one second of burst, as a contract limit would read.
            esp = make_esp(esp_name, server, requests_per_second=rate * (1 if esp_name == "webhook" else 2),
                           burst=rate * (1 if esp_name == "webhook" else 2), timeout_seconds=2.0)
            # Rounds as the sender sizes them for this limit (`default_chunk_size`), unless told otherwise.
            chunk = chunk or default_chunk_size(esp, None)
            started = time.perf_counter()
            summary = run_export(warehouse, esp, workers=workers, chunk_size=chunk,
                                 retry=RetryPolicy(max_attempts=8, base_delay=timedelta(milliseconds=50),
                                                   max_delay=timedelta(seconds=1)),
                                 policy=SendPolicy(max_sends_per_customer=10**6), clock=ticking_noon(),
                                 max_wait_seconds=5)
            elapsed = time.perf_counter() - started
            expected = {send_id_for("bench", c, "at_risk_save") for c in ids}
            attempts = int(warehouse.read_df("select count(*) as n from nextbest.outbox_attempts").iloc[0, 0])
            return {
                "esp": esp_name, "sends": sends, "limit_per_s": rate, "seconds": elapsed, "chunk": chunk,
                "attempts": attempts, "attempts_per_s": attempts / elapsed,
                "delivered_per_s": len(server.deliveries) / elapsed,
                "utilisation": attempts / elapsed / rate,
                "injected": dict(server.injected), "dedup_repeats": server.repeats,
                "duplicates": sum(n - 1 for n in server.deliveries.values() if n > 1),
                "lost": len(expected - set(server.deliveries)),
                "outbox": {k: v for k, v in state_counts(warehouse).items() if v},
                "summary": summary,
            }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--esp", default="webhook", choices=["webhook", "klaviyo", "customerio", "hubspot"])
    parser.add_argument("--sends", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=250.0, help="sends per second the limit allows")
    parser.add_argument("--failure-rate", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=None, help="rows per round (default: the sender's own size)")
    args = parser.parse_args()
    r = bench(args.esp, args.sends, args.rate, args.failure_rate, args.workers, args.chunk)
    print(f"{r['esp']}: {r['sends']:,} sends at a limit of {r['limit_per_s']:.0f}/s in {r['seconds']:.1f}s "
          f"(rounds of {r['chunk']:,})")
    print(f"  attempts {r['attempts']:,} ({r['attempts_per_s']:.1f}/s = {r['utilisation']:.1%} of the limit)")
    print(f"  delivered {r['delivered_per_s']:.1f}/s; injected failures {r['injected']}")
    print(f"  re-sends absorbed by idempotency keys {r['dedup_repeats']}; duplicates {r['duplicates']}; "
          f"lost {r['lost']}; outbox {r['outbox']}")
    ok = r["utilisation"] >= 0.95 and r["duplicates"] == 0 and r["lost"] == 0
    print("target met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
