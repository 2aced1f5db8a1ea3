"""Worker exit codes and the start-up timeouts the supervisor and the workers share (sysexits.h).

Standard library only: the supervisor reads these without importing ``workers`` (and with it confluent-kafka,
tenacity, marshmallow and the pipeline). Each code means one thing; docs/runtime.md lists them.
"""
from __future__ import annotations

EXIT_OK = 0  # stopped on request (warm stop), offsets committed
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: Kafka could not be reached at start
EXIT_SOFTWARE = 70  # EX_SOFTWARE: a batch could not be delivered, or the worker crashed (redelivered after restart)
EXIT_LEASE_HELD = 75  # EX_TEMPFAIL: another live process holds this replica's lease
EXIT_CONFIG = 78  # EX_CONFIG: bad configuration, unknown processor, authentication failure -> FATAL at once
# the supervisor's own: on the embedded SQLite database another live supervisor already runs (only one may)
EXIT_SUPERVISOR_RUNNING = 73  # EX_CANTCREAT: the supervisor cannot register
EXIT_COLD_STOP = 143  # a second SIGTERM: exit at once, commit nothing

# how long a worker may try to reach Kafka at start before it exits EXIT_UNAVAILABLE (the supervisor's start
# timeout allows for it)
CONNECT_TIMEOUT = 10.0

# the worker's Redis socket (connect and read) timeout: a heartbeat blocked on a Redis that vanished may land
# this much after Redis is back, so the supervisor judges liveness only after a span that allows for it
REDIS_SOCKET_TIMEOUT = 5.0
