#!/usr/bin/env bash
# `make run`: kcm on embedded defaults. Kafka and Redis come from the local stack; the state database is
# SQLite unless KCM_DATABASE_URL is set. Honcho runs the Procfile's long-running processes by name (its
# `release` line is the one-shot migration, run here first: started with the others it would exit and stop them).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH"
LOCAL="${KCM_LOCAL:-$ROOT/.local}"
# Kafka and Redis from the local stack, unless the caller chose others; never the local PostgreSQL by accident
eval "$(deploy/local/services.sh env | grep -E 'KCM_(KAFKA_BOOTSTRAP|REDIS_URL)=' | sed 's/^export /: "${/; s/=/:=/; s/$/}"/')"
export KCM_KAFKA_BOOTSTRAP KCM_REDIS_URL
PORT="${KCM_PORT:-8000}"
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "run: port $PORT is in use (another 'make run'?); stop it or choose another with KCM_PORT=..." >&2
  exit 1
fi

# The bootstrap admin's token: generated once, kept in a file only its owner can read
TOKEN_FILE="$LOCAL/admin-token"
if [[ -n "${KCM_BOOTSTRAP_ADMIN_TOKEN:-}" ]]; then
  TOKEN_HINT="KCM_BOOTSTRAP_ADMIN_TOKEN from your environment"
else
  mkdir -p "$LOCAL"
  if [[ ! -s "$TOKEN_FILE" ]]; then
    (umask 077 && python -c 'import secrets; print("kcm_" + secrets.token_urlsafe(32))' >"$TOKEN_FILE")
  fi
  chmod 600 "$TOKEN_FILE"
  KCM_BOOTSTRAP_ADMIN_TOKEN="$(cat "$TOKEN_FILE")"
  TOKEN_HINT="${TOKEN_FILE#"$ROOT"/}   use: -H \"Authorization: Bearer \$(cat ${TOKEN_FILE#"$ROOT"/})\""
fi
export KCM_BOOTSTRAP_ADMIN_TOKEN

# The dashboard's session-signing key: generated once like the token, shared by every web worker
UI_SECRET_FILE="$LOCAL/ui-secret"
if [[ -z "${KCM_UI_SECRET_KEY:-}" ]]; then
  mkdir -p "$LOCAL"
  if [[ ! -s "$UI_SECRET_FILE" ]]; then
    (umask 077 && python -c 'import secrets; print(secrets.token_urlsafe(32))' >"$UI_SECRET_FILE")
  fi
  chmod 600 "$UI_SECRET_FILE"
  KCM_UI_SECRET_KEY="$(cat "$UI_SECRET_FILE")"
fi
export KCM_UI_SECRET_KEY

python -m schema.migrate
cat <<EOT

  kcm is starting (Ctrl-C stops everything):
    API           http://127.0.0.1:$PORT/consumers/
    Swagger UI    http://127.0.0.1:$PORT/docs
    ReDoc         http://127.0.0.1:$PORT/redoc
    OpenAPI       http://127.0.0.1:$PORT/openapi.json
    Admin token   $TOKEN_HINT
    CLI           .venv/bin/kcm --help   (kcm topic create, kcm produce)
    State DB      $(python -c 'from schema.settings import Settings; from schema.db import redacted; print(redacted(Settings.from_env().database_url))')
    Kafka         $KCM_KAFKA_BOOTSTRAP      Redis  $KCM_REDIS_URL
    Stop the local Kafka/Redis afterwards with: make services-stop

EOT
# one JSON object per log line from every process unless the caller chose text (docs/monitoring.md)
export KCM_LOG_FORMAT="${KCM_LOG_FORMAT:-json}"
exec honcho start -f Procfile -p "$PORT" web supervisor deadletters lag
