"""The bare confluent-kafka loops kcm is compared with: ``python -m bench.bare '<job json>'``.

Each runs in its own process (as a kcm worker does), consumes with the worker's own consumer settings and
batch size, hands every batch to one sink with one write, stores the batch's offsets, and stops after
``expected`` messages. It prints one JSON line: its own first-consumed and last-stored times.
"""
from __future__ import annotations

import io
import json
import os
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from bench.kafka_util import BATCH_SIZE, BATCH_TIMEOUT, baseline_consumer_config


class FileSink:
    """One os.write per batch, then fsync when kcm's file_sink would (fsync_interval_ms=0: every batch)."""

    def __init__(self, job: dict):
        self.fd = os.open(job["path"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self.fsync = job.get("fsync", True)

    def write(self, batch) -> None:
        view = memoryview(b"\n".join([m.value() or b"" for m in batch]) + b"\n")
        while view:
            view = view[os.write(self.fd, view):]
        if self.fsync:
            os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


NULL = "\\N"  # COPY text format


def _hex(data: bytes | None) -> str:
    return NULL if data is None else "\\\\x" + data.hex()


def _copy_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class PostgresCopySink:
    """COPY of each batch straight into a table of database_sync's shape, one transaction per batch."""

    def __init__(self, job: dict):
        import psycopg2

        self.conn = psycopg2.connect(job["dsn"])
        self.copy_sql = job["copy_sql"]
        self._seconds: dict[int, str] = {}

    def _timestamp(self, ms: int) -> str:
        seconds, millis = divmod(ms, 1000)
        text = self._seconds.get(seconds)
        if text is None:  # messages of a batch share a handful of seconds: format each once
            text = self._seconds[seconds] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
        return f"{text}.{millis:03d}+00"

    def _line(self, m) -> str:
        headers = m.headers()
        ts_type, ts = m.timestamp()
        header_text = (_copy_escape(json.dumps([[k, v.decode("utf-8", "replace") if v is not None else None]
                                                for k, v in headers])) if headers else NULL)
        return (f"{m.topic()}\t{m.partition()}\t{m.offset()}\t{_hex(m.key())}\t{_hex(m.value())}\t"
                f"{header_text}\t{self._timestamp(ts) if ts_type else NULL}\n")

    def write(self, batch) -> None:
        data = "".join([self._line(m) for m in batch]).encode()
        with self.conn.cursor() as cur:
            cur.copy_expert(self.copy_sql, io.BytesIO(data))
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


class ForwardSink:
    """An idempotent producer (acks=all); every message produced, then one flush per batch."""

    def __init__(self, job: dict):
        self.topic = job["destination"]
        self.failed = 0
        self.producer = Producer({"bootstrap.servers": job["bootstrap"], "enable.idempotence": True, "acks": "all",
                                  **job.get("producer_config", {})})

    def _on_delivery(self, err, _msg) -> None:
        if err is not None:
            self.failed += 1

    def write(self, batch) -> None:
        produce, topic, report = self.producer.produce, self.topic, self._on_delivery
        for m in batch:
            while True:
                try:
                    produce(topic, m.value(), m.key(), headers=m.headers(),
                            timestamp=m.timestamp()[1] if m.timestamp()[0] else 0, on_delivery=report)
                    break
                except BufferError:
                    self.producer.poll(0.01)
        if self.producer.flush(30) or self.failed:
            raise RuntimeError(f"forward: {self.failed} deliveries failed")

    def close(self) -> None:
        self.producer.flush(30)


SINKS = {"file": FileSink, "postgres": PostgresCopySink, "forward": ForwardSink}


class IdleSink:
    """Nothing to write: an idle consumer, for the footprint baseline."""

    def __init__(self, job: dict):
        pass

    def write(self, batch) -> None:
        pass

    def close(self) -> None:
        pass


SINKS["idle"] = IdleSink


def run(job: dict) -> dict:
    """Consume until ``expected`` messages are stored, or, with ``until_signal``, until SIGTERM."""
    stop = []
    if job.get("until_signal"):
        signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    sink = SINKS[job["kind"]](job)
    config = {**baseline_consumer_config(job["bootstrap"], job["group"], job["topic"]),
              **job.get("consumer_config", {})}  # e.g. librdkafka's untuned defaults, for a before/after
    consumer = Consumer(config)
    consumer.subscribe([job["topic"]])
    expected, deadline = job["expected"], time.monotonic() + job.get("timeout", 600)
    first = last = None
    done = batches = 0
    try:
        while (not stop if job.get("until_signal") else done < expected) and time.monotonic() < deadline:
            batch = consumer.consume(num_messages=job.get("batch_size", BATCH_SIZE),
                                     timeout=job.get("batch_timeout", BATCH_TIMEOUT))
            if not batch:
                continue
            if first is None:
                first = time.time()
            good = [m for m in batch if m.error() is None]
            if not good:
                continue
            sink.write(good)
            highest = {(m.topic(), m.partition()): m.offset() for m in good}
            consumer.store_offsets(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in highest.items()])
            done += len(good)
            batches += 1
            if done >= expected and last is None:
                last = time.time()
        last = last or time.time()
        try:
            consumer.commit(asynchronous=False)
        except KafkaException:
            pass
    finally:
        consumer.close()
        sink.close()
    return {"messages": done, "batches": batches, "first": first, "last": last,
            "completed": done >= expected or bool(stop)}  # one of a group stops on the signal with its share


def main(argv: list[str]) -> int:
    job = json.loads(argv[0])
    result = run(job)
    print(json.dumps(result), flush=True)
    return 0 if result["completed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
