"""Profile kcm's hot loop with pyinstrument: ``python -m bench.profile file_sink --messages 200000``.

Runs ``python -m workers`` itself (no supervisor, no API) under pyinstrument on a pre-filled topic with one
processor, waits until the sink holds every message, stops it with SIGTERM (the warm stop path) and prints
pyinstrument's text report; ``--bare`` profiles the matching bare loop instead, for comparison.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid

from bench.kafka_util import Offsets, Topics, prefill, unique
from bench.observe import FileProgress, TableProgress, TopicProgress, watch
from bench.stack import BenchEnv, ensure_database, libpq_dsn

SIZE, PARTITIONS = 100, 4


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("processor", choices=["file_sink", "database_sync", "kafka_forward", "api_list", "api_status"],
                   help="a processor's hot loop, or an API endpoint in-process (Flask test client)")
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--bare", action="store_true", help="profile the bare baseline loop instead of the worker")
    p.add_argument("--consumer-config", default="{}", metavar="JSON",
                   help='with --bare: librdkafka settings over the worker\'s, e.g. \'{"fetch.queue.backoff.ms": 1000}\'')
    p.add_argument("--output", default=None, help="also write the report here (.html for the HTML renderer)")
    args = p.parse_args(argv)

    env = BenchEnv.from_env(uuid.uuid4().hex[:8])
    if args.processor.startswith("api_"):
        return _profile_api(args, env)
    env.sink_root.mkdir(parents=True, exist_ok=True)
    topics, offsets = Topics(env.bootstrap), Offsets(env.bootstrap)
    cleanup = []
    try:
        topic = topics.create(PARTITIONS, prefix="kcm-bench-profile")
        prefill(env.bootstrap, topic, args.messages, size=SIZE, partitions=PARTITIONS)
        config, job, progress = _sink(args, env, topics, offsets, topic, cleanup)
        renderer = "html" if (args.output or "").endswith(".html") else "text"
        out = args.output or str(env.workdir / "profile.txt")
        if args.bare:
            target = ["-m", "bench.bare", json.dumps({**job, "bootstrap": env.bootstrap, "topic": topic,
                                                      "group": unique("kcm-bench-profile"),
                                                      "expected": args.messages,
                                                      "consumer_config": json.loads(args.consumer_config)})]
            child_env = dict(os.environ)
        else:
            from schema.spec import ProcessorSpec, WorkerSpec

            spec = WorkerSpec(consumer_id=str(uuid.uuid4()), replica=0, generation=1,
                              bootstrap_servers=env.bootstrap, topic=topic, group_id=unique("kcm-bench-profile"),
                              processors=(ProcessorSpec(id=str(uuid.uuid4()), processor_type=args.processor,
                                                        config=config),))
            target = ["-m", "workers"]
            child_env = env.kcm_environ(KCM_WORKER_SPEC=spec.to_json(), KCM_LOG_LEVEL="WARNING")
        proc = subprocess.Popen([sys.executable, "-m", "pyinstrument", "--use-timing-thread", "-r", renderer,
                                 "-o", out, *target], env={**child_env, "PYINSTRUMENT_IGNORE_OVERHEAD_WARNING": "1"})
        try:
            window = watch(progress, args.messages, alive=lambda: proc.poll() is None)
            print(f"{args.messages:,} messages in {window.seconds:.2f} s: {window.messages_per_s:,.0f} msg/s")
            if proc.poll() is None and not args.bare:  # the worker's warm stop; the bare loop ends by itself
                proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if renderer == "text":
            print(open(out).read())
        else:
            print(f"wrote {out}")
    finally:
        for action in reversed(cleanup):
            action()
        topics.delete_all()
        offsets.close()
        shutil.rmtree(env.workdir, ignore_errors=True)
    return 0


def _profile_api(args, env, consumers: int = 500, requests: int = 300, rounds: int = 11) -> int:
    """The endpoint's own CPU per request, without gunicorn or the network: where a request's time goes.

    Two apps in this one process, measured in alternating rounds: the stack's (authentication with a viewer API
    key, rate limits on Redis) and one with KCM_AUTH=disabled and KCM_RATE_LIMIT_ENABLED=false; the difference
    is what the security layer costs per request. The profile is of the first."""
    import dataclasses
    import time
    from types import SimpleNamespace

    from pyinstrument import Profiler

    from bench.api_latency import insert_consumers
    from bench.stack import Cleanup

    ensure_database(env.database_url)
    os.environ.update(env.kcm_environ())
    from api import create_app
    from schema.settings import Settings

    cleanup = Cleanup()
    try:
        ids, _delete = insert_consumers(SimpleNamespace(env=env, cleanup=cleanup), consumers)
        from bench.api_client import BENCH_ADMIN_TOKEN, auth_headers

        secured = create_app()
        admin = secured.test_client()
        admin.environ_base["HTTP_AUTHORIZATION"] = auth_headers(BENCH_ADMIN_TOKEN)["Authorization"]
        created = admin.post("/api-keys/", json={"name": f"profile-viewer-{env.run_id}", "role": "viewer"})
        assert created.status_code == 201, created.json
        cleanup.push("revoke the profile's API key", lambda: admin.delete(f"/api-keys/{created.json['id']}/"))
        client = secured.test_client()  # a viewer API key, as the benchmark's clients send
        client.environ_base["HTTP_AUTHORIZATION"] = auth_headers(created.json["token"])["Authorization"]
        open_app = create_app(dataclasses.replace(Settings.from_env(), auth="disabled", rate_limit_enabled=False))
        unsecured = open_app.test_client()
        paths = (["/consumers/"] * requests if args.processor == "api_list"
                 else [f"/consumers/{ids[i % len(ids)]}/status/" for i in range(requests)])

        def per_request_ms(test_client) -> float:
            started = time.process_time()
            for path in paths:
                assert test_client.get(path).status_code == 200
            return (time.process_time() - started) / len(paths) * 1000

        for test_client in (client, unsecured):
            for path in paths[:20]:  # warm: imports, connection pools, compiled SQL
                test_client.get(path)
        on, off = [], []
        for round_number in range(rounds):  # alternating, so a busy moment of the machine falls on both
            pair = ((client, on), (unsecured, off))
            for test_client, figures in (pair if round_number % 2 == 0 else pair[::-1]):
                figures.append(per_request_ms(test_client))
        on_ms, off_ms = sorted(on)[rounds // 2], sorted(off)[rounds // 2]
        profiler = Profiler(interval=0.0005)
        profiler.start()
        for path in paths:
            client.get(path)
        profiler.stop()
        headline = (f"{args.processor}: {on_ms:.3f} ms CPU per request in-process with auth (viewer API key) and "
                    f"rate limits on, {off_ms:.3f} ms with both off: the security layer costs "
                    f"{(on_ms - off_ms) * 1000:.0f} us ({consumers} consumers; medians of {rounds} rounds)")
        report = profiler.output_text(show_all=False)
        if args.output:
            with open(args.output, "w") as fh:
                fh.write(f"{headline}\n{report}")
        print(headline)
        print(report)
        for app in (secured, open_app):
            app.extensions["kcm"].close()
    finally:
        cleanup.run()
    return 0


def _sink(args, env, topics, offsets, topic, cleanup):
    if args.processor == "file_sink":
        path = env.sink_root / "profile.log"
        cleanup.append(lambda: path.unlink(missing_ok=True))
        return ({"path": "profile.log", "format": "raw"}, {"kind": "file", "path": str(path)},
                FileProgress(str(path), SIZE + 1))
    if args.processor == "kafka_forward":
        dest = topics.create(PARTITIONS, prefix="kcm-bench-profile-dest")
        return ({"topic": dest}, {"kind": "forward", "destination": dest,
                                  "producer_config": {"linger.ms": 5}}, TopicProgress(offsets, dest))
    import psycopg2

    from processors.database_target import target_ddl

    ensure_database(env.database_url)
    dsn = libpq_dsn(env.database_url)
    conn = psycopg2.connect(dsn)
    table = unique("bench_profile").replace("-", "_")
    with conn.cursor() as cur:
        cur.execute(target_ddl(table, "bytea"))
    conn.commit()

    def drop():
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        conn.commit()
        conn.close()
    cleanup.append(drop)
    copy_sql = f'COPY {table} (topic, partition, "offset", key, value, headers, "timestamp") FROM STDIN'
    return ({"table": table}, {"kind": "postgres", "dsn": dsn, "table": table, "copy_sql": copy_sql},
            TableProgress(conn, table, topic, dict.fromkeys(range(PARTITIONS), 0)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
