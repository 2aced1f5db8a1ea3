"""Load generators for the API benchmark: ``wrk`` when installed (C, epoll: it takes little CPU from the
server on a small machine), else threaded Python clients spread over a few processes
(``python -m bench.loadgen '<job json>'``). Both return requests/s, p50/p95/p99 and error counts. Every request
carries ``headers`` (the bearer token)."""
from __future__ import annotations

import http.client
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.stats import summarize_latencies

LUA = """
paths = {%(paths)s}
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
done = function(summary, latency, requests)
  io.write(string.format('WRK_JSON {"requests":%%d,"duration_us":%%d,"p50_us":%%f,"p95_us":%%f,"p99_us":%%f,' ..
    '"max_us":%%f,"non2xx":%%d,"connect_errors":%%d,"read_errors":%%d,"write_errors":%%d,"timeouts":%%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout))
end
"""


def run_wrk(hostport: str, paths: list[str], clients: int, seconds: float, threads: int = 2,
            headers: dict[str, str] | None = None) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(LUA % {"paths": ",".join(json.dumps(p) for p in paths)})
        script = fh.name
    try:
        header_args = [arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")]
        out = subprocess.run(["wrk", "-t", str(min(threads, clients)), "-c", str(clients), "-d", f"{int(seconds)}s",
                              "--timeout", "10s", *header_args, "-s", script, f"http://{hostport}{paths[0]}"],
                             capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    finally:
        Path(script).unlink(missing_ok=True)
    data = json.loads(next(line for line in out.splitlines() if line.startswith("WRK_JSON "))[9:])
    errors = data["non2xx"] + data["connect_errors"] + data["read_errors"] + data["write_errors"] + data["timeouts"]
    return {"tool": "wrk", "requests": data["requests"],
            "requests_per_s": data["requests"] / (data["duration_us"] / 1e6),
            "p50_ms": data["p50_us"] / 1000, "p95_ms": data["p95_us"] / 1000, "p99_ms": data["p99_us"] / 1000,
            "max_ms": data["max_us"] / 1000, "errors": errors, "raw": data}


# ---------------------------------------------------------------------- the Python fallback
def _client_thread(hostport: str, paths: list[str], deadline: float, latencies: list, errors: list,
                   headers: dict[str, str]) -> None:
    host, port = hostport.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    pick = random.Random().choice
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            conn.request("GET", pick(paths), headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors.append(response.status)
                continue
            latencies.append((time.perf_counter() - started) * 1000)
        except (OSError, http.client.HTTPException):
            errors.append("io")
            conn.close()
    conn.close()


def _worker_main(job: dict) -> None:
    latencies: list[float] = []
    errors: list = []
    deadline = time.monotonic() + job["seconds"]
    threads = [threading.Thread(target=_client_thread, args=(job["hostport"], job["paths"], deadline, latencies,
                                                                errors, job.get("headers") or {}))
               for _ in range(job["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"latencies": latencies, "errors": len(errors)}))


def run_python(hostport: str, paths: list[str], clients: int, seconds: float, processes: int = 4,
               headers: dict[str, str] | None = None) -> dict:
    processes = max(1, min(processes, clients))
    per = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    procs = [subprocess.Popen([sys.executable, "-m", "bench.loadgen", json.dumps(
        {"hostport": hostport, "paths": paths, "seconds": seconds, "threads": n, "headers": headers or {}})],
        stdout=subprocess.PIPE, text=True)
        for n in per]
    latencies: list[float] = []
    errors = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 60)
        data = json.loads(out)
        latencies += data["latencies"]
        errors += data["errors"]
    summary = summarize_latencies(latencies)
    return {"tool": "python", "requests": len(latencies), "requests_per_s": len(latencies) / seconds,
            "p50_ms": summary["p50_ms"], "p95_ms": summary["p95_ms"], "p99_ms": summary["p99_ms"],
            "max_ms": summary["max_ms"], "errors": errors}


def load(hostport: str, paths: list[str], clients: int, seconds: float, *, tool: str = "auto",
         headers: dict[str, str] | None = None) -> dict:
    if tool == "wrk" or (tool == "auto" and shutil.which("wrk")):
        return run_wrk(hostport, paths, clients, seconds, headers=headers)
    return run_python(hostport, paths, clients, seconds, headers=headers)


if __name__ == "__main__":
    _worker_main(json.loads(sys.argv[1]))
