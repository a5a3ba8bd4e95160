#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft, broker+controller in one JVM) for development, tests and the benchmark,
# resolved from Maven Central because there is no Docker engine on these machines.
#
#   kafka-local.sh resolve  fetch the broker's jars from Maven Central (start does it when needed)
#   kafka-local.sh start    resolve (once), format (once), start, wait until it answers; reuses a running one
#   kafka-local.sh stop     stop the broker this script started
#   kafka-local.sh status   exit 0 if it runs and answers
#   kafka-local.sh brokers  print the bootstrap address
#
# Environment: KAFKA_LOCAL_DIR (cache + data, default <repo>/.cache/kafka-local), KAFKA_LOCAL_LIB (the jars,
# default $KAFKA_LOCAL_DIR/lib), KAFKA_LOCAL_PORT (9092),
# KAFKA_LOCAL_CONTROLLER_PORT (9093), KAFKA_LOCAL_HEAP (512m), KAFKA_LOCAL_START_TIMEOUT (90 seconds).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dir="${KAFKA_LOCAL_DIR:-$repo/.cache/kafka-local}"
port="${KAFKA_LOCAL_PORT:-9092}"
controller_port="${KAFKA_LOCAL_CONTROLLER_PORT:-9093}"
heap="${KAFKA_LOCAL_HEAP:-512m}"
start_timeout="${KAFKA_LOCAL_START_TIMEOUT:-90}"
# The jars can live apart from the data, so that a second broker (a test's own) reuses them.
lib="${KAFKA_LOCAL_LIB:-$dir/lib}"
data="$dir/data"
pidfile="$dir/kafka.pid"
logfile="$dir/kafka.log"
props="$dir/server.properties"

say() { printf 'kafka-local: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed: $2"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid; pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

resolve() {
  [ -f "$lib/.resolved" ] && [ "$lib/.resolved" -nt "$here/pom.xml" ] && return 0
  need mvn "install Maven (apt-get install maven) so the broker can be resolved from Maven Central"
  say "resolving Apache Kafka from Maven Central into $lib"
  rm -rf "$lib"
  mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$lib" -DincludeScope=runtime >&2 || die "Maven could not resolve the broker (see above)"
  touch "$lib/.resolved"
}

write_properties() {
  mkdir -p "$data"
  cat >"$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=24
PROPS
}

java_args() {
  JAVA_ARGS=(java -Xms128m "-Xmx$heap" -XX:+UseG1GC -Djava.awt.headless=true
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn
    -Dorg.slf4j.simpleLogger.log.kafka.server.KafkaRaftServer=info
    -cp "$lib/*")
}

format_storage() {
  [ -f "$data/meta.properties" ] && return 0
  local cluster_id
  # A cluster id is 16 random bytes, URL-safe base64 without padding; one starting with '-' would read as an option.
  cluster_id="-"
  while [ "${cluster_id#-}" != "$cluster_id" ]; do
    cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  done
  java_args; "${JAVA_ARGS[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$props" --standalone >>"$logfile" 2>&1 \
    || { tail -n 20 "$logfile" >&2; die "formatting the KRaft storage failed"; }
}

start() {
  if pid="$(running_pid)" && port_open "$port"; then
    say "reusing the broker already running (pid $pid) on 127.0.0.1:$port"
    echo "127.0.0.1:$port"; return 0
  fi
  port_open "$port" && die "127.0.0.1:$port is taken by a process this script did not start; set KAFKA_BROKERS to use it, or KAFKA_LOCAL_PORT to pick another port"
  need java "install a Java 17+ runtime (apt-get install openjdk-17-jre-headless) to run the local broker"
  mkdir -p "$dir"
  resolve
  write_properties
  : >"$logfile"
  format_storage
  say "starting the broker on 127.0.0.1:$port (log: $logfile)"
  # setsid: the broker must outlive the shell that started it, and not get the terminal's Ctrl-C.
  java_args
  setsid "${JAVA_ARGS[@]}" kafka.Kafka "$props" >>"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  local waited=0
  until port_open "$port" && grep -q "Kafka Server started" "$logfile"; do
    if ! running_pid >/dev/null; then tail -n 30 "$logfile" >&2; die "the broker exited during start"; fi
    if [ "$waited" -ge $((start_timeout * 5)) ]; then tail -n 30 "$logfile" >&2; stop; die "the broker did not answer within ${start_timeout}s"; fi
    sleep 0.2; waited=$((waited + 1))
  done
  say "broker ready after $((waited / 5)).$((waited % 5 * 2))s"
  echo "127.0.0.1:$port"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then rm -f "$pidfile"; say "no broker of ours is running"; return 0; fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then say "broker did not stop in 30s; killing it"; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$pidfile"
  say "broker stopped"
}

case "${1:-}" in
  resolve) resolve ;;
  start) start ;;
  stop) stop ;;
  status) running_pid >/dev/null && port_open "$port" ;;
  brokers) echo "127.0.0.1:$port" ;;
  *) echo "usage: $0 resolve|start|stop|status|brokers" >&2; exit 2 ;;
esac
