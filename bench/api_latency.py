"""Benchmark 6: API latency with N consumers in PostgreSQL and C concurrent clients for S seconds, on
``GET /consumers/`` and ``GET /consumers/{id}/status/``; floor: the same gunicorn serving fixed bytes.

The stack's API runs as deployed: authentication on (the clients send a viewer API key) and rate limits on
(Redis; limits far above the load). The same list is measured side by side on a second gunicorn with
KCM_AUTH=disabled and KCM_RATE_LIMIT_ENABLED=false, in alternating runs: the cost of security."""
from __future__ import annotations

import os
import time
import uuid

from bench.api_client import KcmClient, auth_headers
from bench.harness import wait_until
from bench.loadgen import load
from bench.procfs import cpu_of, cpu_seconds
from bench.results import Result, Target, fmt
from bench.stack import Service, free_port, libpq_dsn
from bench.stats import median, ratio

WARMUP_SECONDS = 2
RUN_WARMUP_SECONDS = 1
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


def children_of(pid: int) -> list[int]:
    """The gunicorn workers: the processes whose parent is the master."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def database_backends(database_url: str) -> list[int]:
    """PostgreSQL's backend processes serving the bench database (the API's pooled connections, the
    supervisor's); readable in /proc when the server runs on this machine, as `make services` starts it."""
    import psycopg2

    with psycopg2.connect(libpq_dsn(database_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()")
        pids = [row[0] for row in cur.fetchall()]
    conn.close()
    return pids


def _cpu_ms_per_request(pids: list[int], before: dict[int, float], requests: int) -> float | None:
    """CPU the processes spent per request over a run; None when none of them could be read."""
    after = cpu_of(pids)
    spent = sum(after[pid] - before[pid] for pid in after if pid in before)
    return spent * 1000 / requests if requests and any(pid in before for pid in after) else None


class Arm:
    """One server measured: where it listens, whose workers' CPU is counted, the token its clients send."""

    def __init__(self, h, label: str, hostport: str, server_pid: int, paths: list[str], *, database: bool = True,
                 token: str | None = None):
        self.label, self.hostport, self.paths, self.database = label, hostport, paths, database
        self.headers = auth_headers(token)
        self.tool = getattr(h.args, "load_generator", "auto")
        load(hostport, paths, h.args.api_clients, WARMUP_SECONDS, tool=self.tool, headers=self.headers)
        self.workers = children_of(server_pid)
        self.backends = database_backends(h.env.database_url) if database else []
        self.runs: list[dict] = []

    def run(self, h) -> dict:
        """One run of C clients for S seconds; besides latency, the CPU per request of the server's workers and
        of the PostgreSQL backends (CPU is the resource that runs out: the figure a busy machine disturbs least)."""
        # every run starts hot: after the other server's run, the first seconds of this one (idle workers and
        # connections waking up) would otherwise land in its p99 and not in the other's
        load(self.hostport, self.paths, h.args.api_clients, RUN_WARMUP_SECONDS, tool=self.tool, headers=self.headers)
        workers_before, backends_before = cpu_of(self.workers), cpu_of(self.backends)
        figures = load(self.hostport, self.paths, h.args.api_clients, h.args.api_seconds, tool=self.tool,
                       headers=self.headers)
        figures["app_cpu_ms_per_request"] = _cpu_ms_per_request(self.workers, workers_before, figures["requests"])
        figures["db_cpu_ms_per_request"] = (_cpu_ms_per_request(self.backends, backends_before, figures["requests"])
                                            if self.database else None)
        print(f"  {self.label} run {len(self.runs) + 1}/{h.args.runs}: {figures['requests_per_s']:.0f} req/s, p50 "
              f"{figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, errors {figures['errors']} "
              f"({figures['tool']}); CPU per request: workers {fmt(figures['app_cpu_ms_per_request'], 2, ' ms')}"
              f", PostgreSQL {fmt(figures['db_cpu_ms_per_request'], 2, ' ms')}")
        self.runs.append(figures)
        return figures

    def summary(self) -> dict:
        per_run = self.runs
        cpu = {k: median([r[k] for r in per_run]) if all(r[k] is not None for r in per_run) else None
               for k in ("app_cpu_ms_per_request", "db_cpu_ms_per_request")}
        return {"runs": per_run, **{k: median([r[k] for r in per_run])
                                    for k in ("requests_per_s", "p50_ms", "p95_ms", "p99_ms")},
                **cpu, "errors": sum(r["errors"] for r in per_run), "tool": per_run[0]["tool"]}


def _measure(h, hostport: str, paths: list[str], label: str, server_pid: int, database: bool = True,
             token: str | None = None) -> dict:
    arm = Arm(h, label, hostport, server_pid, paths, database=database, token=token)
    for _ in range(h.args.runs):
        arm.run(h)
    return arm.summary()


def _side_by_side(h, arms: list[Arm]) -> list[dict]:
    """Runs of each arm in turn, the order reversed every other round: a busy moment of a shared machine falls
    on both sides alike, which one server measured after the other cannot promise."""
    for round_number in range(h.args.runs):
        for arm in (arms if round_number % 2 == 0 else arms[::-1]):
            arm.run(h)
    return [arm.summary() for arm in arms]


def _second_api(h, stack, name: str, **env: str) -> tuple[Service, str]:
    """Another gunicorn like the stack's, on its own port, with ``env`` on top of the stack's environment."""
    port = free_port()
    service = Service(name, [stack.api.proc.args[0], *stack.api.proc.args[1:2], "--bind", f"127.0.0.1:{port}",
                             "--workers", str(h.args.web_workers), "--log-level", "warning"],
                      h.env.kcm_environ(**env), h.env.workdir / "logs" / f"{name}.log")
    h.cleanup.push(f"stop the {name} app", lambda: service.stop(10))
    wait_until(KcmClient(f"127.0.0.1:{port}", token=None).ready, 30, interval=0.1, what=f"{name} ready")
    return service, f"127.0.0.1:{port}"


def settle(pid: int, busy_share: float = 0.1, timeout: float = 30.0, interval: float = 0.5) -> float:
    """Wait until the process uses less than ``busy_share`` of a core over two intervals in a row (the
    supervisor taking up 500 new consumers would otherwise load whichever server is measured first); returns
    the seconds waited."""
    started = time.monotonic()
    quiet = 0
    while quiet < 2 and time.monotonic() - started < timeout:
        before = cpu_seconds(pid)
        time.sleep(interval)
        quiet = quiet + 1 if (cpu_seconds(pid) - before) / interval < busy_share else 0
    return time.monotonic() - started


def api_latency(h) -> Result:
    stack = h.stack()
    ids, delete_consumers = insert_consumers(h, h.args.api_consumers)
    hostport = stack.client.hostport
    # a viewer key, as a dashboard would hold: its lookup is part of every request
    viewer = stack.client.json("POST", "/api-keys/", {"name": "bench-viewer", "role": "viewer"}, expect=(201,))
    token = viewer["token"]
    print(f"  supervisor settled after {settle(stack.supervisor.pid):.1f} s")
    # the supervisor reconciles these rows too (all stopped): its CPU shares the cores with the API
    supervisor_cpu_before, clock_before = cpu_seconds(stack.supervisor.pid), time.monotonic()
    insecure, insecure_hostport = _second_api(h, stack, "api-auth-off", KCM_AUTH="disabled",
                                              KCM_RATE_LIMIT_ENABLED="false")
    listing, unsecured = _side_by_side(h, [
        Arm(h, "GET /consumers/", hostport, stack.api.pid, ["/consumers/"], token=token),
        Arm(h, "GET /consumers/ auth+limits OFF", insecure_hostport, insecure.pid, ["/consumers/"])])
    insecure.stop(10)
    status = _measure(h, hostport, [f"/consumers/{cid}/status/" for cid in ids], "GET /consumers/{id}/status/",
                      stack.api.pid, token=token)
    supervisor_pct = ((cpu_seconds(stack.supervisor.pid) - supervisor_cpu_before)
                      / (time.monotonic() - clock_before) * 100)
    # one client: the service time without queueing, to read the concurrent figures against (Little's law)
    single = load(hostport, ["/consumers/"], 1, SINGLE_CLIENT_SECONDS, tool=getattr(h.args, "load_generator", "auto"),
                  headers=auth_headers(token))
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
    base = _measure(h, f"127.0.0.1:{port}", ["/consumers/"], "floor (fixed bytes)", floor.pid, database=False)
    floor.stop(10)
    delete_consumers()  # now, not at the end of the run: later benchmarks measure their own consumers only

    rows = [[name, fmt(r["requests_per_s"], 0), fmt(r["p50_ms"], 1, "ms"), fmt(r["p99_ms"], 1, "ms"), str(r["errors"]),
             fmt(r.get("app_cpu_ms_per_request"), 2, "ms"), fmt(r.get("db_cpu_ms_per_request"), 2, "ms")]
            for name, r in (("GET /consumers/", listing), ("GET /consumers/{id}/status/", status),
                            ("GET /consumers/ with auth and rate limits OFF", unsecured),
                            ("floor: Flask returning fixed bytes", base),
                            ("GET /consumers/ with 1 client (no queueing)", single))]
    value = ratio(listing["p99_ms"], base["p99_ms"])
    rows.append(["list p99 kcm ÷ floor", fmt(value, 2), "", "", "", "", ""])
    # each round's two runs are neighbours in time: the median of their ratios cancels what drifts between rounds
    rounds = [ratio(on["p99_ms"], off["p99_ms"]) for on, off in zip(listing["runs"], unsecured["runs"], strict=True)]
    security_ratio = median(rounds) if None not in rounds else None
    cpu_ratio = ratio(listing["app_cpu_ms_per_request"], unsecured["app_cpu_ms_per_request"])
    rows.append(["list p99 auth+limits ON ÷ OFF (median of rounds)", fmt(security_ratio, 2),
                 "rounds: " + ", ".join(fmt(value, 2) for value in rounds), "", "", "", ""])
    rows.append(["list workers CPU/req auth+limits ON ÷ OFF", fmt(cpu_ratio, 2), "", "", "", "", ""])
    rows.append([f"supervisor CPU meanwhile ({h.args.api_consumers} stopped consumers)",
                 f"{fmt(supervisor_pct, 1)} % of a core", "", "", "", "", ""])
    return Result(
        name="api_latency", title="API latency", baseline="the same gunicorn serving a Flask view of fixed bytes",
        params={"consumers": h.args.api_consumers, "clients": h.args.api_clients, "seconds": h.args.api_seconds,
                "gunicorn_workers": h.args.web_workers, "load_generator": listing["tool"]},
        columns=["endpoint", "req/s", "p50", "p99", "errors", "workers CPU/req", "PostgreSQL CPU/req"], rows=rows,
        figures={"list": {k: v for k, v in listing.items() if k != "runs"},
                 "status": {k: v for k, v in status.items() if k != "runs"},
                 "floor": {k: v for k, v in base.items() if k != "runs"},
                 "list_auth_off": {k: v for k, v in unsecured.items() if k != "runs"},
                 "list_p99_auth_on_over_off": security_ratio,
                 "list_p99_auth_on_over_off_by_round": rounds,
                 "list_cpu_auth_on_over_off": cpu_ratio,
                 "list_single_client": {k: v for k, v in single.items() if k != "raw"},
                 "supervisor_cpu_pct_during_load": supervisor_pct},
        runs=[{"list": a, "status": b, "floor": c} for a, b, c in zip(listing["runs"], status["runs"], base["runs"], strict=True)],
        ratio=value, ratio_label="kcm list p99 ÷ floor p99",
        targets=[Target(label="GET /consumers/ p99", value=listing["p99_ms"], op="<", target=25, unit=" ms"),
                 Target(label="list p99 auth+limits ON ÷ OFF", value=security_ratio, op="<", target=1.10)],
        notes=["Security on (the figures above) vs off: a viewer API key (validated per process against the change "
               "version the list reads anyway) and the per-principal rate limit (counted in memory, added to Redis "
               "in batches), against a second gunicorn with KCM_AUTH=disabled and KCM_RATE_LIMIT_ENABLED=false. "
               "Both are up together and measured in alternating runs (the order reversed every other round), so "
               "a busy moment of the machine falls on both.",
               "gunicorn as in the Procfile (sync workers; each request on a new connection). The list is the "
               "first page at flask-smorest's default page size (10) with the X-Pagination total over all rows.",
               "Status requests pick a random one of the consumers (all stopped: two Redis hashes per replica).",
               "CPU/req: utime + stime of the gunicorn workers and of PostgreSQL's backends serving the bench "
               "database (/proc, so PostgreSQL must run on this machine), over each run, divided by its requests; "
               "the load generator and the kernel's network work come on top.",
               "Load generator, server, PostgreSQL and Redis share the machine's cores.",
               f"With C clients always waiting on a reply, latency ≈ C ÷ throughput (Little's law): p99 < 25 ms "
               f"with {h.args.api_clients} clients needs well over {h.args.api_clients / 0.025:,.0f} req/s from this "
               "server (compare the floor's rate above)."])
