"""Exit 0 once the Kafka at argv[1] answers a metadata request (the broker is unfenced and serving)."""
import sys
import time

from confluent_kafka.admin import AdminClient


def main() -> int:
    bootstrap = sys.argv[1]
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000})
    deadline = time.monotonic() + 60
    last = None
    while time.monotonic() < deadline:
        try:
            metadata = admin.list_topics(timeout=5)
            if metadata.brokers:
                return 0
        except Exception as exc:  # KafkaException while the broker is still starting
            last = exc
        time.sleep(0.5)
    print(f"kafka_ready: no metadata from {bootstrap} in 60 s: {last}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
