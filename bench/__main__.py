"""``python -m bench`` (``make bench``): run the benchmarks, print their tables, write
``bench/results/<name>.json`` and regenerate ``BENCHMARKS.md``.

Quick run: ``python -m bench --only throughput_file --messages 100000 --runs 3``.
Two runs at once: give the second its own state, ``--bench-db kcm_bench_b --bench-redis-db 11``.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
import uuid

BENCHMARKS = ["throughput_file", "throughput_database", "throughput_forward", "scaling", "commit_interval",
              "throughput_json_transform", "scaling_cpu",
              "worker_metrics",
              "control_latency", "control_scale", "api_latency", "metrics_scrape", "footprint"]


ENTRY = {"throughput_file": "throughput", "throughput_database": "throughput", "throughput_forward": "throughput",
         "scaling": "throughput", "commit_interval": "commit_interval",
         "throughput_json_transform": "steps", "scaling_cpu": "steps",
         "worker_metrics": "worker_metrics", "control_latency": "control", "control_scale": "control_scale",
         "api_latency": "api_latency", "metrics_scrape": "metrics_scrape", "footprint": "footprint"}


def _load(name: str):
    import importlib

    return getattr(importlib.import_module(f"bench.{ENTRY[name]}"), name)


def parse_args(argv: list[str]) -> argparse.Namespace:
    from bench.stack import BENCH_DATABASE, BENCH_REDIS_DB, SCALE_SUFFIX, bench_database_problem

    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help=f"run only these (repeat or comma-separate): {', '.join(BENCHMARKS)}")
    p.add_argument("--runs", type=int, default=3, help="runs per side; figures are medians (default 3)")
    p.add_argument("--messages", type=int, default=None,
                   help="messages for the file throughput, scaling, commit interval and worker metrics "
                   "benchmarks (default 1,000,000) and the steps benchmarks (json_transform 1,000,000, "
                   "scaling_cpu 2,000,000)")
    p.add_argument("--db-messages", type=int, default=None, help="messages for database_sync (default 200,000)")
    p.add_argument("--forward-messages", type=int, default=None, help="messages for kafka_forward (default 200,000)")
    p.add_argument("--control-runs", type=int, default=20, help="start/stop cycles (default 20)")
    p.add_argument("--api-consumers", type=int, default=500, help="consumers in the database (default 500)")
    p.add_argument("--api-clients", type=int, default=32, help="concurrent API clients (default 32)")
    p.add_argument("--api-seconds", type=float, default=20, help="seconds of load per endpoint (default 20)")
    p.add_argument("--load-generator", choices=["auto", "wrk", "python"], default="auto",
                   help="API load: wrk when installed (auto), else threaded Python clients")
    p.add_argument("--scrape-consumers", type=int, default=500, help="consumers for the /metrics scrape (default 500)")
    p.add_argument("--scrape-partitions", type=int, default=4, help="partitions per scraped consumer (default 4)")
    p.add_argument("--scrapes", type=int, default=200, help="timed /metrics scrapes (default 200)")
    p.add_argument("--idle-consumers", type=int, default=50, help="idle consumers for the footprint (default 50)")
    p.add_argument("--cpu-seconds", type=float, default=60, help="supervisor CPU sampling window (default 60)")
    p.add_argument("--web-workers", type=int, default=2, help="gunicorn workers, as the Procfile (default 2)")
    p.add_argument("--profile-supervisor", metavar="PATH", default=None,
                   help="run the supervisor under pyinstrument and write its text report to PATH")
    p.add_argument("--keep-workdir", action="store_true",
                   help="keep .local/bench/<run>/ (logs of the API, supervisor and workers; set KCM_BENCH_LOG_LEVEL=INFO)")
    p.add_argument("--bench-db", metavar="NAME", default=BENCH_DATABASE,
                   help=f"the harness's own state database on the KCM_DATABASE_URL server, emptied at start "
                   f"(default {BENCH_DATABASE}; control_scale also uses NAME{SCALE_SUFFIX}); give a second run "
                   "that runs at the same time its own")
    p.add_argument("--bench-redis-db", metavar="N", type=int, default=BENCH_REDIS_DB,
                   help=f"the harness's own Redis database index on the KCM_REDIS_URL server, its kcm:* keys "
                   f"deleted at start (default {BENCH_REDIS_DB}; control_scale also uses N-1); give a second run "
                   "that runs at the same time its own, two apart")
    p.add_argument("--scaling-broker", choices=["private", "shared"], default="private",
                   help="where scaling and scaling_cpu run: a private broker on Kafka's default "
                        "group.initial.rebalance.delay.ms (3000, default) or the shared local one (0); bench/broker.py")
    p.add_argument("--no-write", action="store_true", help="print only: no results JSON, no BENCHMARKS.md")
    p.add_argument("--results-dir", default=None, help="where the JSON files go (default bench/results)")
    p.add_argument("--markdown", default=None, help="the Markdown file to regenerate (default BENCHMARKS.md)")
    p.add_argument("--render-only", action="store_true", help="regenerate BENCHMARKS.md from the JSON files")
    args = p.parse_args(argv)
    names = [n.strip() for item in args.only for n in item.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    if args.runs < 1:
        p.error("--runs must be at least 1")
    problem = bench_database_problem(args.bench_db)
    if problem:
        p.error(f"--bench-db {args.bench_db!r}: {problem}")
    if args.bench_redis_db < 1:
        p.error("--bench-redis-db must be at least 1 (control_scale uses the index below it)")
    args.names = names
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from pathlib import Path

    from bench.results import (
        MARKDOWN,
        RESULTS_DIR,
        describe_machine,
        print_result,
        regenerate_markdown,
        write_result,
    )

    results_dir = Path(args.results_dir) if args.results_dir else RESULTS_DIR
    markdown = Path(args.markdown) if args.markdown else MARKDOWN
    if args.render_only:
        print(f"wrote {regenerate_markdown(markdown, results_dir)}")
        return 0

    from bench.harness import Harness
    from bench.stack import BenchEnv, Cleanup, terminate_on_sigterm

    terminate_on_sigterm()
    machine_info, commit, date = describe_machine()
    print(f"kcm bench at {commit} on {machine_info['cpu_model']} ({machine_info['cores']} cores), "
          f"load {machine_info['load_avg_at_start']}: {', '.join(args.names)}")
    cleanup = Cleanup()
    env = BenchEnv.from_env(uuid.uuid4().hex[:8], database=args.bench_db, redis_db=args.bench_redis_db)
    failed: list[str] = []
    try:
        harness = Harness(env, args, cleanup)
        if not args.keep_workdir:
            cleanup.push("remove the work directory", lambda: __import__("shutil").rmtree(env.workdir, True))
        for name in args.names:
            print(f"\n-- {name}", flush=True)
            started = time.monotonic()
            load_before = [round(v, 2) for v in __import__("os").getloadavg()[:2]]
            try:
                result = _load(name)(harness)
            except KeyboardInterrupt:
                raise
            except Exception:
                traceback.print_exc()
                failed.append(name)
                continue
            result.params["load_avg_at_start"] = load_before
            result.params["duration_s"] = round(time.monotonic() - started)
            print_result(result)
            print(f"({time.monotonic() - started:.0f} s)")
            if not args.no_write:
                print(f"wrote {write_result(result, machine_info=machine_info, commit=commit, date=date, directory=results_dir)}")
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        failed.append("interrupted")
    finally:
        cleanup.run()
    if not args.no_write and len(failed) < len(args.names):
        print(f"wrote {regenerate_markdown(markdown, results_dir)}")
    if failed:
        print(f"\nbenchmarks that did not run to the end: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
