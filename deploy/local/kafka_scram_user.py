"""Create (or update) the local stack's SCRAM-SHA-512 user on a running broker: argv[1] the PLAINTEXT bootstrap,
argv[2] the user name, the password on stdin (never in argv, which any local user can read).

services.sh creates the user at format time (``--add-scram``); this upgrades a stack formatted before the SCRAM
listener existed without wiping its data."""
import sys

from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

ITERATIONS = 8192


def main() -> int:
    bootstrap, user = sys.argv[1], sys.argv[2]
    password = sys.stdin.read().strip().encode()
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})
    upsert = UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, ITERATIONS),
                                          password)
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
