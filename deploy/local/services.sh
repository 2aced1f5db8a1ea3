#!/usr/bin/env bash
# The local stack kcm's tests, benchmarks and `make run` use: Apache Kafka (KRaft, one node),
# PostgreSQL 15 and Redis, all on 127.0.0.1, all state under $KCM_LOCAL (default .local/).
#
#   services.sh start [kafka|postgres|redis ...]   idempotent: starts only what is not running
#   services.sh stop  [...]                        stops what this script started
#   services.sh status                             one line per service
#   services.sh env                                the export lines for the running stack
#
# Kafka listens on KCM_LOCAL_KAFKA_PORT (PLAINTEXT, default 19092) and KCM_LOCAL_KAFKA_SCRAM_PORT
# (SASL_PLAINTEXT with SCRAM-SHA-512, default 19094; user kcm, password in $KCM_LOCAL/kafka/scram-password,
# exported by `env` as KCM_SECRET_KAFKA_PASSWORD). A second stack: another KCM_LOCAL and other ports.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL="${KCM_LOCAL:-$ROOT/.local}"
KAFKA_PORT="${KCM_LOCAL_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KCM_LOCAL_KAFKA_CONTROLLER_PORT:-19093}"
# SASL_PLAINTEXT + SCRAM-SHA-512 listener; user kcm, its password generated into $LOCAL/kafka/scram-password
KAFKA_SCRAM_PORT="${KCM_LOCAL_KAFKA_SCRAM_PORT:-19094}"
KAFKA_SCRAM_USER=kcm
# 0 here: a test's first consumer gets its partitions at once. Kafka's own default (3000) is what a production
# cluster runs, and what the scaling benchmarks start a private broker with (bench/broker.py).
KAFKA_GROUP_DELAY_MS="${KCM_LOCAL_KAFKA_GROUP_DELAY_MS:-0}"
PG_PORT="${KCM_LOCAL_PG_PORT:-15432}"
REDIS_PORT="${KCM_LOCAL_REDIS_PORT:-16379}"
PG_USER=kcm
PG_PASSWORD=kcm
PYTHON="${KCM_PYTHON:-$ROOT/.venv/bin/python}"

say() { printf '%s\n' "$*" >&2; }
die() { say "services: $*"; exit 1; }

alive() { # pidfile -> 0 when the process named in it is alive
  [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds what
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    port_open "$1" && return 0
    sleep 0.1
  done
  return 1
}

as_root() { [[ "$(id -u)" == 0 ]]; }

apt_install() { # package binary-to-look-for
  if as_root && command -v apt-get >/dev/null; then
    say "services: installing Debian package $1 (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null; } ||
      die "apt-get install $1 failed"
  else
    die "$2 not found. Install it first: 'sudo apt-get install $1' (Debian/Ubuntu) or 'brew install $1' (macOS)."
  fi
}

# ---------------------------------------------------------------- Redis
redis_bin() { command -v redis-server || true; }

redis_start() {
  local dir="$LOCAL/redis"
  mkdir -p "$dir"
  if alive "$dir/redis.pid"; then say "redis: already running on 127.0.0.1:$REDIS_PORT"; return; fi
  [[ -n "$(redis_bin)" ]] || apt_install redis-server redis-server
  port_open "$REDIS_PORT" && die "port $REDIS_PORT is taken by another process; set KCM_LOCAL_REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --dir "$dir" \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save '' --appendonly no >/dev/null
  wait_port "$REDIS_PORT" 10 || die "redis did not open 127.0.0.1:$REDIS_PORT; see $dir/redis.log"
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -f "$dir/redis.pid" ]] && break
    sleep 0.1
  done
  say "redis: started on 127.0.0.1:$REDIS_PORT"
}

redis_stop() { stop_pidfile redis "$LOCAL/redis/redis.pid"; }

# ---------------------------------------------------------------- PostgreSQL
pg_bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/initdb" ]] && { echo "$d"; return; }
  done
  command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]] && pg_config --bindir && return
  true
}

pg_run() { # run a PostgreSQL binary as the owner of the data dir (root may not run the server)
  if as_root; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# The server runs as 'postgres' when we are root; it needs a data dir it can reach. A checkout under a
# private home (e.g. /root) is not reachable, so fall back to a per-checkout folder under /var/tmp.
pg_dir() {
  if as_root && ! runuser -u postgres -- test -x "$LOCAL" 2>/dev/null; then
    echo "/var/tmp/kcm-postgres-$(printf '%s' "$LOCAL" | md5sum | cut -c1-10)"
  else
    echo "$LOCAL/postgres"
  fi
}

postgres_start() {
  local dir bin
  dir="$(pg_dir)"
  bin="$(pg_bindir)"
  [[ -n "$bin" ]] || { apt_install postgresql initdb; bin="$(pg_bindir)"; }
  [[ -n "$bin" ]] || die "PostgreSQL's initdb not found after install"
  if as_root; then
    id postgres >/dev/null 2>&1 || die "user 'postgres' is missing; reinstall the postgresql package"
    chmod o+x "$LOCAL" 2>/dev/null || true
    dir="$(pg_dir)"
    mkdir -p "$dir"
    chown postgres "$dir"
  fi
  mkdir -p "$dir"
  if [[ -f "$dir/data/postmaster.pid" ]] && pg_run "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    say "postgres: already running on 127.0.0.1:$PG_PORT"
    return
  fi
  if [[ ! -f "$dir/data/PG_VERSION" ]]; then
    local pwfile="$dir/pwfile"
    printf '%s\n' "$PG_PASSWORD" >"$pwfile"
    as_root && chown postgres "$pwfile"
    pg_run "$bin/initdb" -D "$dir/data" -U "$PG_USER" --pwfile="$pwfile" -A scram-sha-256 \
      --auth-local=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
      die "initdb failed; see $dir/initdb.log"
    rm -f "$pwfile"
  fi
  port_open "$PG_PORT" && die "port $PG_PORT is taken by another process; set KCM_LOCAL_PG_PORT"
  pg_run "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $dir -c max_connections=200 -c fsync=on" start >/dev/null ||
    die "postgres did not start; see $dir/postgres.log"
  local db
  for db in kcm kcm_test; do
    if ! pg_run "$bin/psql" -h "$dir" -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1; then
      pg_run "$bin/createdb" -h "$dir" -p "$PG_PORT" -U "$PG_USER" "$db"
    fi
  done
  say "postgres: started on 127.0.0.1:$PG_PORT (databases kcm, kcm_test; role $PG_USER)"
}

postgres_stop() {
  local dir bin
  dir="$(pg_dir)"
  bin="$(pg_bindir)"
  if [[ -n "$bin" && -f "$dir/data/postmaster.pid" ]]; then
    pg_run "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 && say "postgres: stopped" && return
  fi
  say "postgres: not running"
}

# ---------------------------------------------------------------- Kafka
kafka_fetch() {
  local lib="$LOCAL/kafka/lib"
  if [[ -f "$LOCAL/kafka/lib.ok" ]]; then return; fi
  command -v java >/dev/null || die "java not found: install a JDK 17+ ('sudo apt-get install openjdk-17-jre-headless')"
  command -v mvn >/dev/null || die "mvn not found: install Maven ('sudo apt-get install maven')"
  say "kafka: fetching Apache Kafka jars from Maven Central (once; cached in $lib)"
  rm -rf "$lib"
  mvn -B -q -f "$ROOT/deploy/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$lib" -DincludeScope=runtime >"$LOCAL/kafka/mvn.log" 2>&1 ||
    die "mvn could not fetch Kafka; see $LOCAL/kafka/mvn.log"
  ls "$lib"/kafka_2.13-*.jar >/dev/null 2>&1 || die "kafka_2.13 jar missing after mvn; see $LOCAL/kafka/mvn.log"
  touch "$LOCAL/kafka/lib.ok"
}

kafka_config() {
  local dir="$LOCAL/kafka"
  mkdir -p "$dir/config" "$dir/data"
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
    -e "s|@SCRAM_PORT@|$KAFKA_SCRAM_PORT|g" -e "s|@GROUP_DELAY_MS@|$KAFKA_GROUP_DELAY_MS|g" \
    -e "s|@DATA@|$dir/data|g" "$ROOT/deploy/kafka/server.properties.in" >"$dir/config/server.properties"
  cp "$ROOT/deploy/kafka/log4j2.properties" "$dir/config/log4j2.properties"
}

kafka_java() { # main-class args...
  local dir="$LOCAL/kafka"
  java -Xmx512m -Xms256m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$dir/config/log4j2.properties" -Dkafka.logs.dir="$dir/logs" \
    -cp "$dir/lib/*" "$@"
}

scram_password_file() { echo "$LOCAL/kafka/scram-password"; }

scram_password() { # the SCRAM user's password, generated once (mode 0600)
  local file
  file="$(scram_password_file)"
  mkdir -p "$(dirname "$file")"
  if [[ ! -s "$file" ]]; then
    (umask 077 && od -An -N18 -tx1 /dev/urandom | tr -d ' \n' >"$file")
  fi
  cat "$file"
}

kafka_start() {
  local dir="$LOCAL/kafka"
  mkdir -p "$dir/logs"
  if alive "$dir/kafka.pid"; then say "kafka: already running on 127.0.0.1:$KAFKA_PORT"; return; fi
  kafka_fetch
  kafka_config
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$dir/logs/format.log" | tail -1)"
    [[ -n "$cluster_id" ]] || die "kafka: could not make a cluster id; see $dir/logs/format.log"
    kafka_java kafka.tools.StorageTool format --standalone -t "$cluster_id" \
      --add-scram "SCRAM-SHA-512=[name=$KAFKA_SCRAM_USER,password=$(scram_password)]" \
      -c "$dir/config/server.properties" >>"$dir/logs/format.log" 2>&1 ||
      die "kafka: storage format failed; see $dir/logs/format.log"
    touch "$dir/scram.ok"
  fi
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process; set KCM_LOCAL_KAFKA_PORT"
  port_open "$KAFKA_SCRAM_PORT" &&
    die "port $KAFKA_SCRAM_PORT is taken by another process; set KCM_LOCAL_KAFKA_SCRAM_PORT"
  nohup java -Xmx512m -Xms256m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$dir/config/log4j2.properties" -Dkafka.logs.dir="$dir/logs" \
    -cp "$dir/lib/*" kafka.Kafka "$dir/config/server.properties" >"$dir/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$dir/kafka.pid"
  # the PLAINTEXT port opens only once the broker is unfenced
  local i
  for ((i = 0; i < 900; i++)); do
    alive "$dir/kafka.pid" || die "kafka exited during start; see $dir/logs/stdout.log and $dir/logs/server.log"
    port_open "$KAFKA_PORT" && break
    sleep 0.1
  done
  port_open "$KAFKA_PORT" || die "kafka did not open 127.0.0.1:$KAFKA_PORT in 90 s; see $dir/logs/server.log"
  if [[ -x "$PYTHON" ]]; then
    "$PYTHON" "$ROOT/deploy/local/kafka_ready.py" "127.0.0.1:$KAFKA_PORT" ||
      die "kafka answers on its port but not to a metadata request; see $dir/logs/server.log"
  fi
  wait_port "$KAFKA_SCRAM_PORT" 30 || die "kafka did not open its SCRAM listener 127.0.0.1:$KAFKA_SCRAM_PORT"
  if [[ ! -f "$dir/scram.ok" ]]; then # formatted before the SCRAM listener existed: add the user now
    scram_password | "$PYTHON" "$ROOT/deploy/local/kafka_scram_user.py" "127.0.0.1:$KAFKA_PORT" "$KAFKA_SCRAM_USER" ||
      die "kafka: could not create the SCRAM user $KAFKA_SCRAM_USER; see $dir/logs/server.log"
    touch "$dir/scram.ok"
  fi
  say "kafka: started on 127.0.0.1:$KAFKA_PORT, SCRAM-SHA-512 on 127.0.0.1:$KAFKA_SCRAM_PORT (pid $(cat "$dir/kafka.pid"))"
}

kafka_stop() { stop_pidfile kafka "$LOCAL/kafka/kafka.pid" 60; }

# ---------------------------------------------------------------- common
stop_pidfile() { # name pidfile [seconds]
  local pid i
  if ! alive "$2"; then say "$1: not running"; rm -f "$2"; return; fi
  pid="$(cat "$2")"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < ${3:-20} * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$1: did not stop in ${3:-20} s, killing"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$2"
  say "$1: stopped"
}

status_line() { # name ok-test
  if "$2"; then printf '%-9s running  %s\n' "$1" "$3"; else printf '%-9s stopped\n' "$1"; fi
}
kafka_up() { alive "$LOCAL/kafka/kafka.pid" && port_open "$KAFKA_PORT"; }
kafka_scram_up() { alive "$LOCAL/kafka/kafka.pid" && port_open "$KAFKA_SCRAM_PORT"; }
redis_up() { alive "$LOCAL/redis/redis.pid" && port_open "$REDIS_PORT"; }
postgres_up() { [[ -f "$(pg_dir)/data/postmaster.pid" ]] && port_open "$PG_PORT"; }

print_env() {
  cat <<EOF
export KCM_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
export KCM_LOCAL_KAFKA_SCRAM_BOOTSTRAP=127.0.0.1:$KAFKA_SCRAM_PORT
export KCM_LOCAL_KAFKA_SCRAM_USER=$KAFKA_SCRAM_USER
export KCM_DATABASE_URL=postgresql+psycopg2://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/kcm
export KCM_TEST_DATABASE_URL=postgresql+psycopg2://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/kcm_test
export KCM_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
EOF
  # the SCRAM user's password, for the reference ${env:KCM_SECRET_KAFKA_PASSWORD} (the local stack only)
  if [[ -s "$(scram_password_file)" ]]; then
    echo "export KCM_SECRET_KAFKA_PASSWORD=$(cat "$(scram_password_file)")"
  fi
}

cmd="${1:-status}"
shift || true
which=("$@")
[[ ${#which[@]} -gt 0 ]] || which=(redis postgres kafka)
mkdir -p "$LOCAL"

case "$cmd" in
  start)
    for s in "${which[@]}"; do "${s}_start"; done
    say ""
    say "# connection settings (eval \"\$(make -s services-env)\" to load them):"
    if [[ " ${which[*]} " == *" postgres "* ]]; then print_env; else print_env | grep -v DATABASE_URL; fi
    ;;
  stop)
    for ((k = ${#which[@]} - 1; k >= 0; k--)); do "${which[$k]}_stop"; done
    ;;
  status)
    status_line kafka kafka_up "127.0.0.1:$KAFKA_PORT"
    status_line scram kafka_scram_up "127.0.0.1:$KAFKA_SCRAM_PORT (Kafka's SASL_PLAINTEXT SCRAM-SHA-512 listener)"
    status_line postgres postgres_up "127.0.0.1:$PG_PORT"
    status_line redis redis_up "127.0.0.1:$REDIS_PORT"
    ;;
  env) print_env ;;
  *) die "unknown command '$cmd' (start|stop|status|env)" ;;
esac
