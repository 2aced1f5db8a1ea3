#!/usr/bin/env bash
# `make run`: kcm on embedded defaults. Kafka and Redis come from the local stack; the state database is
# SQLite unless KCM_DATABASE_URL is set. Honcho runs the Procfile.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH"
# Kafka and Redis from the local stack, unless the caller chose others; never the local PostgreSQL by accident
eval "$(deploy/local/services.sh env | grep -E 'KCM_(KAFKA_BOOTSTRAP|REDIS_URL)=' | sed 's/^export /: "${/; s/=/:=/; s/$/}"/')"
export KCM_KAFKA_BOOTSTRAP KCM_REDIS_URL
PORT="${KCM_PORT:-8000}"
python -m schema.migrate
cat <<EOT

  kcm is starting (Ctrl-C stops everything):
    API           http://127.0.0.1:$PORT/consumers/
    Swagger UI    http://127.0.0.1:$PORT/docs
    ReDoc         http://127.0.0.1:$PORT/redoc
    OpenAPI       http://127.0.0.1:$PORT/openapi.json
    State DB      $(python -c 'from schema.settings import Settings; from schema.db import redacted; print(redacted(Settings.from_env().database_url))')
    Kafka         $KCM_KAFKA_BOOTSTRAP      Redis  $KCM_REDIS_URL
    Stop the local Kafka/Redis afterwards with: make services-stop

EOT
exec honcho start -f Procfile -p "$PORT"
