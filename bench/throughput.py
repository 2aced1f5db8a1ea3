"""Benchmarks 1-4: throughput of kcm's file_sink, database_sync and kafka_forward against bare loops on
the same pre-filled topic, and replicas 2 vs 1. Sides alternate in order from run to run so neither
always gets the warmer page cache."""
from __future__ import annotations

from bench.kafka_util import unique
from bench.observe import FileProgress, TableProgress, TopicProgress
from bench.results import Result, Target, fmt
from bench.stack import libpq_dsn
from bench.stats import median, ratio

SIZE = 100
PARTITIONS = 4


def _order(run: int, sides: list[str]) -> list[str]:
    return sides if run % 2 == 0 else list(reversed(sides))


def _compare(h, name: str, title: str, baseline: str, target: float, messages: int, sides: dict,
             labels: dict, params: dict, notes: list[str], extra_ratios: tuple[tuple[str, str], ...] = (),
             steady_from: float = 0.25) -> Result:
    """Run every side ``h.args.runs`` times, alternating order; the headline is the ratio of the medians of the
    second side over the first, ``extra_ratios`` are more (numerator, denominator) rows for context."""
    runs: list[dict] = []
    names = list(sides)
    for run in range(h.args.runs):
        figures = {}
        for side in _order(run, names):
            try:
                figures[side] = sides[side]()
            finally:
                h.discard_sinks()
            print(f"  run {run + 1}/{h.args.runs} {labels[side]}: {fmt(figures[side]['messages_per_s'], 0)} msg/s "
                  f"(machine {fmt(figures[side]['machine_busy_pct'], 0)}% busy)")
        runs.append(figures)
    med = {side: median([r[side]["messages_per_s"] for r in runs if r[side]["messages_per_s"]] or [0.0])
           for side in names}
    base, measured = names[0], names[1]
    value = ratio(med[measured], med[base])
    key = str(steady_from)
    steady = {side: median([r[side]["steady_messages_per_s"][key] for r in runs
                            if r[side]["steady_messages_per_s"][key]] or [0.0]) for side in names}
    cpu = {side: median([r[side]["cpu_us_per_message"] for r in runs if r[side]["cpu_us_per_message"]] or [0.0])
           for side in names}
    rows = [[labels[s], fmt(med[s], 0), " / ".join(fmt(r[s]["messages_per_s"], 0) for r in runs),
             fmt(median([r[s]["seconds"] for r in runs]), 3), fmt(steady[s], 0), fmt(cpu[s], 2),
             fmt(median([r[s]["machine_busy_pct"] or 0.0 for r in runs]), 0) + " %"] for s in names]
    for num, den in ((measured, base), *extra_ratios):
        rows.append([f"ratio {labels[num]} ÷ {labels[den]}", fmt(ratio(med[num], med[den]), 3), "", "",
                     fmt(ratio(steady[num], steady[den]), 3), fmt(ratio(cpu[num], cpu[den]), 3), ""])
    notes = [*notes, "consumer CPU µs/msg: utime+stime of the consuming process(es), every thread (librdkafka's "
             "included), between the first and the last sighting, per message; a busy machine disturbs it far "
             "less than wall time. Machine CPU busy: all cores, everyone's work, over the run."]
    if any(r[s].get("rows") not in (None, r[s]["total"]) for r in runs for s in names):
        notes = [*notes, "row count after a run differed from the messages in the topic (see runs[].rows)"]
    if any(not r[s].get("offsets_committed", True) for r in runs for s in names):
        notes = [*notes, "some kcm run did not show committed offsets equal to the high watermarks within 15 s"]
    return Result(
        name=name, title=title, baseline=baseline, params={**params, "runs": h.args.runs},
        columns=["side", "msg/s (median)", "msg/s per run", "seconds (median)", f"steady msg/s ({steady_from:.0%}->end)",
                 "consumer CPU µs/msg", "machine CPU busy"],
        rows=rows, figures={**{f"{s}_messages_per_s": med[s] for s in names},
                            **{f"{s}_steady_messages_per_s": steady[s] for s in names},
                            **{f"{s}_cpu_us_per_message": cpu[s] for s in names},
                            "cpu_per_message_ratio": ratio(cpu[measured], cpu[base]),
                            "steady_ratio": ratio(steady[measured], steady[base]),
                            **{f"ratio_{num}_over_{den}": ratio(med[num], med[den]) for num, den in extra_ratios}},
        runs=runs, ratio=value,
        ratio_label=f"{labels[measured]} ÷ {labels[base]}",
        targets=[Target(label=f"{labels[measured]} ÷ {labels[base]}", value=value, op=">=", target=target)],
        notes=notes)


def _file_processors(path, root) -> list[dict]:
    return [{"processor_type": "file_sink", "config": {"path": str(path.relative_to(root)), "format": "raw"}}]


def throughput_file(h) -> Result:
    messages = h.args.messages or 1_000_000
    topic = h.prefilled_topic(messages, PARTITIONS, SIZE)

    def bare():
        path = h.sink_path("bare-file")
        return h.run_bare({"kind": "file", "topic": topic, "path": str(path), "fsync": True},
                          FileProgress(str(path), SIZE + 1), messages)

    def kcm():
        path = h.sink_path("kcm-file")
        return h.run_kcm(topic, _file_processors(path, h.env.sink_root), FileProgress(str(path), SIZE + 1), messages)

    return _compare(h, "throughput_file", "Throughput, file sink", "bare confluent-kafka loop, one write + fsync "
                    "per batch", 0.90, messages, {"bare": bare, "kcm": kcm}, {"bare": "bare", "kcm": "kcm"},
                    {"messages": messages, "partitions": PARTITIONS, "value_bytes": SIZE, "format": "raw",
                     "fsync": "every batch (file_sink default)"},
                    ["Timed from the first poll that sees lines in the file to the first that sees all of them "
                     "(the same observer, every 5 ms, for both sides)."])


def throughput_database(h) -> Result:
    import psycopg2

    from processors.database_target import target_ddl

    messages = h.args.db_messages or 200_000
    topic = h.prefilled_topic(messages, PARTITIONS, SIZE)
    dsn = libpq_dsn(h.stack().env.database_url)
    conn = psycopg2.connect(dsn)
    h.cleanup.push("close the table probe", conn.close)

    def table() -> str:
        name = unique("bench_sink").replace("-", "_")
        with conn.cursor() as cur:
            cur.execute(target_ddl(name, "bytea"))
        conn.commit()

        def drop():
            with conn.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {name}")
            conn.commit()
        h.cleanup.push(f"drop table {name}", drop)
        return name

    low = dict.fromkeys(range(PARTITIONS), 0)

    def finish(figures, progress):
        figures["rows"] = progress.exact()
        with conn.cursor() as cur:  # 200,000 rows a run: gone before the next run, not at the end
            cur.execute(f"DROP TABLE IF EXISTS {progress.table}")
        conn.commit()
        return figures

    def bare():
        name = table()
        progress = TableProgress(conn, name, topic, low)
        copy_sql = f'COPY {name} (topic, partition, "offset", key, value, headers, "timestamp") FROM STDIN'
        return finish(h.run_bare({"kind": "postgres", "topic": topic, "dsn": dsn, "table": name,
                                  "copy_sql": copy_sql}, progress, messages), progress)

    def kcm():
        name = table()
        progress = TableProgress(conn, name, topic, low)
        processors = [{"processor_type": "database_sync", "config": {"table": name, "value_format": "bytea"}}]
        return finish(h.run_kcm(topic, processors, progress, messages), progress)

    return _compare(h, "throughput_database", "Throughput, database sink", "bare loop: COPY of each batch into the "
                    "same table shape, one transaction per batch", 0.80, messages, {"bare": bare, "kcm": kcm},
                    {"bare": "bare COPY", "kcm": "kcm database_sync"},
                    {"messages": messages, "partitions": PARTITIONS, "value_bytes": SIZE, "value_format": "bytea"},
                    ["Both COPY straight into the table, one transaction per batch; database_sync falls back to a "
                     "temp table + INSERT ... ON CONFLICT DO NOTHING only when a batch meets rows already there "
                     "(a redelivery), which a fresh topic never does.",
                     "Timed by polling max(offset) per partition (an index lookup) every 20 ms; the exact row "
                     "count is checked after each run."])


def throughput_forward(h) -> Result:
    messages = h.args.forward_messages or 200_000
    topic = h.prefilled_topic(messages, PARTITIONS, SIZE)

    def destination() -> str:
        return h.topics.create(PARTITIONS, prefix="kcm-bench-dest")

    def bare():
        dest = destination()
        # the producer settings kafka_forward uses by default (it forces idempotence and acks=all)
        producer = {"linger.ms": 5, "message.timeout.ms": 30_000, "compression.type": "none"}
        return h.run_bare({"kind": "forward", "topic": topic, "destination": dest, "producer_config": producer},
                          TopicProgress(h.offsets, dest), messages)

    def kcm():
        dest = destination()
        processors = [{"processor_type": "kafka_forward", "config": forward_config(h, dest)}]
        return h.run_kcm(topic, processors, TopicProgress(h.offsets, dest), messages)

    return _compare(h, "throughput_forward", "Throughput, forwarder", "bare consume -> idempotent produce "
                    "(acks=all) -> flush per batch", 0.85, messages, {"bare": bare, "kcm": kcm},
                    {"bare": "bare", "kcm": "kcm kafka_forward"},
                    {"messages": messages, "partitions": PARTITIONS, "value_bytes": SIZE},
                    ["Timed by polling the destination topic's high watermarks every 10 ms."])


def forward_config(h, destination: str) -> dict:
    return {"topic": destination}  # kafka_forward's defaults otherwise: the consumer's cluster, linger.ms 5


def scaling_broker(h) -> str:
    """The scaling benchmarks' broker, for their params."""
    from bench.broker import KAFKA_DEFAULT_GROUP_DELAY_MS

    if getattr(h.args, "scaling_broker", "private") == "shared":
        return "the shared local broker, group.initial.rebalance.delay.ms=0"
    return f"a private broker, group.initial.rebalance.delay.ms={KAFKA_DEFAULT_GROUP_DELAY_MS} (Kafka's default)"


def scaling(h) -> Result:
    h = h.scaling()  # a broker on Kafka's default group settings (bench.broker), unless --scaling-broker shared
    messages = h.args.messages or 1_000_000
    topic = h.prefilled_topic(messages, PARTITIONS, SIZE)

    def kcm_replicas(n):
        def side():
            path = h.sink_path(f"kcm-replicas{n}")
            return h.run_kcm(topic, _file_processors(path, h.env.sink_root), FileProgress(str(path), SIZE + 1),
                             messages, replicas=n)
        return side

    def bare_processes(n):
        def side():
            path = h.sink_path(f"bare-processes{n}")
            return h.run_bare({"kind": "file", "topic": topic, "path": str(path), "fsync": True},
                              FileProgress(str(path), SIZE + 1), messages, processes=n)
        return side

    return _compare(h, "scaling", "Scaling, replicas 2 vs 1", "the same kcm consumer with replicas: 1", 1.7, messages,
                    {"replicas1": kcm_replicas(1), "replicas2": kcm_replicas(2),
                     "bare1": bare_processes(1), "bare2": bare_processes(2)},
                    {"replicas1": "kcm replicas: 1", "replicas2": "kcm replicas: 2",
                     "bare1": "bare, 1 process", "bare2": "bare, 2 processes"},
                    {"messages": messages, "partitions": PARTITIONS, "value_bytes": SIZE, "sink": "file_sink raw",
                     "broker": scaling_broker(h)},
                    ["Both replicas (or both bare processes, one group) append to one file (O_APPEND, one write "
                     "and one fsync per batch). The window runs from the first message written to the last, as a "
                     "user would see it; the steady column starts at half of the messages. On the private broker "
                     "(Kafka's default group.initial.rebalance.delay.ms) both members join the group's first "
                     "generation; on the shared one (--scaling-broker shared, 0) the second one's join is inside "
                     "the window (bench/broker.py).",
                     "The bare pair shows what this machine allows: when it does not scale either, the limit is "
                     "the cores (shared with Kafka, PostgreSQL and anything else running), not kcm."],
                    extra_ratios=(("bare2", "bare1"), ("replicas2", "bare2")), steady_from=0.5)
