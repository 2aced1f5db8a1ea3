"""``kcm consumers status|lag|errors``: what a consumer is doing now; ``status --watch`` refreshes in place."""
from __future__ import annotations

import json
import sys
import time
from datetime import datetime

import click

from api.cli import output
from api.cli.client import Api, api_options, path

REPLICA_COLUMNS = ("replica", "state", "alive", "pid", "host", "restarts", "messages", "errors",
                   ("partitions", lambda r: ",".join(p.rsplit(":", 1)[-1] for p in r.get("partitions") or []) or None),
                   "last_error")
LAG_COLUMNS = ("partition", "committed", "high_watermark", "lag_messages", "lag_seconds", "verdict")
ERROR_COLUMNS = ("time", "replica", "kind", "processor", "message")


def lag_line(lag: dict | None) -> str:
    if not lag:
        return "lag:        no sample yet (the lag monitor has not read this consumer's group)"
    seconds = lag.get("max_seconds")
    age = "-" if seconds is None else f"{seconds:.1f} s"
    return f"lag:        {lag['total_messages']} messages, oldest unconsumed {age} (sampled {lag.get('sampled_at')})"


def status_text(status: dict) -> str:
    health = status.get("health") or {}
    throughput = status.get("throughput")
    lines = [
        f"consumer:   {status['id']}",
        f"status:     {status['status']}" + (f" ({status['status_reason']})" if status.get("status_reason") else ""),
        f"state:      {status['state']} (desired {status['desired_state']}, generation {status['generation']})",
        f"health:     {health.get('verdict')}: {health.get('reason')}",
        lag_line(status.get("lag")),
    ]
    if throughput:
        lines.append(f"throughput: {throughput['messages_per_second']:.1f} msg/s, "
                     f"{throughput['bytes_per_second']:.0f} B/s")
    replicas = status.get("replicas") or []
    return "\n".join(lines) + "\n\n" + (output.table(replicas, REPLICA_COLUMNS) if replicas else "(no replicas)")


def lag_text(status: dict) -> str:
    lag = status.get("lag")
    if not lag:
        return lag_line(lag)
    return lag_line(lag) + "\n\n" + output.table(lag["partitions"], LAG_COLUMNS)


@click.command("status")
@api_options
@click.argument("consumer")
@click.option("--watch", "-w", is_flag=True, help="Refresh until interrupted (or --count refreshes).")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True, metavar="SECONDS",
              help="Seconds between refreshes with --watch.")
@click.option("--count", type=click.IntRange(min=1), metavar="N", help="With --watch: stop after N refreshes.")
def status(api: Api, fmt: str, consumer: str, watch: bool, interval: float, count: int | None) -> None:
    """Status, live state per replica, health, lag and throughput of CONSUMER."""
    route = path("consumers", consumer, "status")
    if not watch:
        output.emit(api.get(route), fmt, text=status_text)
        return
    in_place = fmt == "table" and sys.stdout.isatty()
    shown = 0
    try:
        while True:
            body = api.get(route)
            shown += 1
            show_refresh(body, fmt, in_place, consumer, interval)
            if count is not None and shown >= count:
                return
            time.sleep(interval)
    except KeyboardInterrupt:  # Ctrl-C is how a watch ends
        click.echo()


def show_refresh(body: dict, fmt: str, in_place: bool, consumer: str, interval: float) -> None:
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    if fmt == "json":  # one document per line (JSON Lines), for `| jq` and friends
        click.echo(json.dumps(body, separators=(",", ":")))
    elif fmt == "yaml":
        click.echo("---\n" + output.dump_yaml(body).rstrip("\n"))
    else:
        if in_place:
            click.clear()
        header = f"kcm consumers status {consumer} (every {interval:g} s; Ctrl-C stops)  {stamp}"
        click.echo(header + "\n\n" + status_text(body) + ("" if in_place else "\n"))


@click.command("lag")
@api_options
@click.argument("consumer")
def lag(api: Api, fmt: str, consumer: str) -> None:
    """CONSUMER's lag per partition (committed offset, end offset, messages and seconds behind)."""
    body = api.get(path("consumers", consumer, "status"))
    output.emit(body.get("lag"), fmt, text=lambda _: lag_text(body))


@click.command("errors")
@api_options
@click.argument("consumer")
def errors(api: Api, fmt: str, consumer: str) -> None:
    """The last 20 errors of CONSUMER's replicas, newest first."""
    output.emit(api.get(path("consumers", consumer, "errors")), fmt, columns=ERROR_COLUMNS)
