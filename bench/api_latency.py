"""Benchmark 6: API latency with N consumers in PostgreSQL and C concurrent clients for S seconds, on
``GET /consumers/`` and ``GET /consumers/{id}/status/``; floor: the same gunicorn serving fixed bytes."""
from __future__ import annotations

import time
import uuid

from bench.api_client import KcmClient
from bench.harness import wait_until
from bench.loadgen import load
from bench.procfs import cpu_seconds
from bench.results import Result, Target, fmt
from bench.stack import Service, free_port
from bench.stats import median, ratio

WARMUP_SECONDS = 2
SINGLE_CLIENT_SECONDS = 5


def insert_consumers(h, count: int) -> tuple[list[str], object]:
    """Rows straight into the bench database (the figure is about reading them); one file_sink each."""
    from schema.db import make_engine, make_session_factory
    from schema.models import Consumer, DownstreamProcessor

    engine = make_engine(h.env.database_url)
    ids = [uuid.uuid4() for _ in range(count)]
    with make_session_factory(engine)() as session:
        for n, cid in enumerate(ids):
            session.add(Consumer(
                id=cid, bootstrap_servers=[h.env.bootstrap], topic=f"kcm-bench-api-{n % 50}",
                consumer_group=f"kcm-bench-api-{n}", replicas=1,
                downstream_processors=[DownstreamProcessor(processor_type="file_sink",
                                                           config={"path": f"api/{n}.log", "format": "raw"})]))
        session.commit()

    def delete():
        from sqlalchemy import delete as sql_delete

        with make_session_factory(engine)() as session:
            session.execute(sql_delete(Consumer).where(Consumer.id.in_(ids)))
            session.commit()
        engine.dispose()
    h.cleanup.push(f"delete {count} API-benchmark consumers", delete)  # on an error; idempotent
    return [str(i) for i in ids], delete


def _measure(h, hostport: str, paths: list[str], label: str) -> dict:
    tool = getattr(h.args, "load_generator", "auto")
    load(hostport, paths, h.args.api_clients, WARMUP_SECONDS, tool=tool)
    per_run = []
    for run in range(h.args.runs):
        figures = load(hostport, paths, h.args.api_clients, h.args.api_seconds, tool=tool)
        print(f"  {label} run {run + 1}/{h.args.runs}: {figures['requests_per_s']:.0f} req/s, p50 "
              f"{figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, errors {figures['errors']} "
              f"({figures['tool']})")
        per_run.append(figures)
    return {"runs": per_run, **{k: median([r[k] for r in per_run])
                                for k in ("requests_per_s", "p50_ms", "p95_ms", "p99_ms")},
            "errors": sum(r["errors"] for r in per_run), "tool": per_run[0]["tool"]}


def api_latency(h) -> Result:
    stack = h.stack()
    ids, delete_consumers = insert_consumers(h, h.args.api_consumers)
    hostport = stack.client.hostport
    # the supervisor reconciles these rows too (all stopped): its CPU shares the cores with the API
    supervisor_cpu_before, clock_before = cpu_seconds(stack.supervisor.pid), time.monotonic()
    listing = _measure(h, hostport, ["/consumers/"], "GET /consumers/")
    status = _measure(h, hostport, [f"/consumers/{cid}/status/" for cid in ids], "GET /consumers/{id}/status/")
    supervisor_pct = ((cpu_seconds(stack.supervisor.pid) - supervisor_cpu_before)
                      / (time.monotonic() - clock_before) * 100)
    # one client: the service time without queueing, to read the concurrent figures against (Little's law)
    single = load(hostport, ["/consumers/"], 1, SINGLE_CLIENT_SECONDS, tool=getattr(h.args, "load_generator", "auto"))
    print(f"  GET /consumers/ with 1 client: {single['requests_per_s']:.0f} req/s, p50 {single['p50_ms']:.1f} ms, "
          f"p99 {single['p99_ms']:.1f} ms")

    body_path = h.env.workdir / "floor-body.json"
    _code, body = stack.client.request("GET", "/consumers/")
    body_path.write_bytes(body)
    port = free_port()
    from bench.floor_app import BODY_ENV

    floor = Service("floor", [stack.api.proc.args[0], "bench.floor_app:create_app()", "--bind", f"127.0.0.1:{port}",
                              "--workers", str(h.args.web_workers), "--log-level", "warning"],
                    h.env.kcm_environ(**{BODY_ENV: str(body_path)}), h.env.workdir / "logs" / "floor.log")
    h.cleanup.push("stop the floor app", lambda: floor.stop(10))
    wait_until(KcmClient(f"127.0.0.1:{port}").ready, 30, interval=0.1, what="floor app ready")
    base = _measure(h, f"127.0.0.1:{port}", ["/consumers/"], "floor (fixed bytes)")
    floor.stop(10)
    delete_consumers()  # now, not at the end of the run: later benchmarks measure their own consumers only

    rows = [[name, fmt(r["requests_per_s"], 0), fmt(r["p50_ms"], 1, "ms"), fmt(r["p99_ms"], 1, "ms"), str(r["errors"])]
            for name, r in (("GET /consumers/", listing), ("GET /consumers/{id}/status/", status),
                            ("floor: Flask returning fixed bytes", base),
                            ("GET /consumers/ with 1 client (no queueing)", single))]
    value = ratio(listing["p99_ms"], base["p99_ms"])
    rows.append(["list p99 kcm ÷ floor", fmt(value, 2), "", "", ""])
    rows.append([f"supervisor CPU meanwhile ({h.args.api_consumers} stopped consumers)",
                 f"{fmt(supervisor_pct, 1)} % of a core", "", "", ""])
    return Result(
        name="api_latency", title="API latency", baseline="the same gunicorn serving a Flask view of fixed bytes",
        params={"consumers": h.args.api_consumers, "clients": h.args.api_clients, "seconds": h.args.api_seconds,
                "gunicorn_workers": h.args.web_workers, "load_generator": listing["tool"]},
        columns=["endpoint", "req/s", "p50", "p99", "errors"], rows=rows,
        figures={"list": {k: v for k, v in listing.items() if k != "runs"},
                 "status": {k: v for k, v in status.items() if k != "runs"},
                 "floor": {k: v for k, v in base.items() if k != "runs"},
                 "list_single_client": {k: v for k, v in single.items() if k != "raw"},
                 "supervisor_cpu_pct_during_load": supervisor_pct},
        runs=[{"list": a, "status": b, "floor": c} for a, b, c in zip(listing["runs"], status["runs"], base["runs"], strict=True)],
        ratio=value, ratio_label="kcm list p99 ÷ floor p99",
        targets=[Target(label="GET /consumers/ p99", value=listing["p99_ms"], op="<", target=25, unit=" ms")],
        notes=["gunicorn as in the Procfile (sync workers; each request on a new connection). The list is the "
               "first page at flask-smorest's default page size (10) with the X-Pagination total over all rows.",
               "Status requests pick a random one of the consumers (all stopped: two Redis hashes per replica).",
               "Load generator, server, PostgreSQL and Redis share the machine's cores.",
               f"With C clients always waiting on a reply, latency ≈ C ÷ throughput (Little's law): p99 < 25 ms "
               f"with {h.args.api_clients} clients needs well over {h.args.api_clients / 0.025:,.0f} req/s from this "
               "server (compare the floor's rate above)."])
