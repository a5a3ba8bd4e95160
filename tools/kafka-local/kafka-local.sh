#!/usr/bin/env bash
# Apache Kafka (KRaft) on this machine for development, tests and the benchmark, resolved from Maven Central
# because there is no Docker engine on these machines: one node (broker+controller in one JVM) by default, or a
# cluster of N such nodes, each in its own JVM with its own data, forming one KRaft quorum.
#
#   kafka-local.sh resolve       fetch the broker's jars from Maven Central (start does it when needed)
#   kafka-local.sh start         resolve (once), format (once), start every node, wait until each answers; reuses
#                                running nodes; prints the bootstrap list
#   kafka-local.sh stop          stop every node this script started
#   kafka-local.sh status        one line per node (up or down); exit 0 if every node runs and answers
#   kafka-local.sh brokers       print the bootstrap list
#   kafka-local.sh pids          print the pid of each running node, one per line (for CPU figures)
#   kafka-local.sh kill-node I   kill -9 node I at once, as a crash would
#   kafka-local.sh stop-node I   stop node I gracefully (for a rolling restart)
#   kafka-local.sh start-node I  start node I again on its data, and wait until it answers
#
# Environment: KAFKA_LOCAL_BROKERS (nodes, 1), KAFKA_LOCAL_DIR (cache + data, default <repo>/.cache/kafka-local;
# a cluster lives in <dir>/cluster-N), KAFKA_LOCAL_LIB (the jars, default $KAFKA_LOCAL_DIR/lib), KAFKA_LOCAL_PORT
# (9092; node I listens on PORT+I-1), KAFKA_LOCAL_CONTROLLER_PORT (9093 for one node; PORT+100 for a cluster, node I
# on that +I-1), KAFKA_LOCAL_HEAP (512m; 384m per node in a cluster), KAFKA_LOCAL_START_TIMEOUT (90 seconds).
#
# KAFKA_LOCAL_SECURITY=sasl_ssl: clients connect with TLS and SASL, as to a managed service. The launcher makes a
# CA and a broker certificate (keytool), a user for PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, and writes the apps'
# settings into <KAFKA_LOCAL_DIR>/client.env (`set -a; . client.env; set +a`). Brokers talk to each other on a
# plaintext listener of their own on 127.0.0.1 (KAFKA_LOCAL_INTERNAL_PORT, the controller port + 50). Its data
# lives apart (<dir>/sasl_ssl, <dir>/cluster-N-sasl_ssl), so the two modes never share a store.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
base_dir="${KAFKA_LOCAL_DIR:-$repo/.cache/kafka-local}"
nodes="${KAFKA_LOCAL_BROKERS:-1}"
port="${KAFKA_LOCAL_PORT:-9092}"
start_timeout="${KAFKA_LOCAL_START_TIMEOUT:-90}"
# The jars can live apart from the data, so that a second broker (a test's own) reuses them.
lib="${KAFKA_LOCAL_LIB:-$base_dir/lib}"
security="${KAFKA_LOCAL_SECURITY:-plaintext}"
case "$nodes" in 1 | 3 | 5) ;; *) echo "kafka-local: KAFKA_LOCAL_BROKERS must be 1, 3 or 5 (a KRaft quorum), not $nodes" >&2; exit 2 ;; esac
case "$security" in plaintext | sasl_ssl) ;; *) echo "kafka-local: KAFKA_LOCAL_SECURITY must be plaintext or sasl_ssl, not $security" >&2; exit 2 ;; esac
if [ "$nodes" = 1 ]; then
  dir="$base_dir"
  controller_port="${KAFKA_LOCAL_CONTROLLER_PORT:-9093}"
  heap="${KAFKA_LOCAL_HEAP:-512m}"
else
  dir="$base_dir/cluster-$nodes"
  controller_port="${KAFKA_LOCAL_CONTROLLER_PORT:-$((port + 100))}"
  heap="${KAFKA_LOCAL_HEAP:-384m}"
fi
if [ "$security" = sasl_ssl ]; then
  if [ "$nodes" = 1 ]; then dir="$base_dir/sasl_ssl"; else dir="$dir-sasl_ssl"; fi
fi
internal_port="${KAFKA_LOCAL_INTERNAL_PORT:-$((controller_port + 50))}"
secrets="$dir/security"
client_user=matrix
replication=$(( nodes >= 3 ? 3 : 1 ))
min_isr=$(( nodes >= 3 ? 2 : 1 ))

say() { printf 'kafka-local: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed: $2"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Node I's files and ports. One node keeps the layout of earlier versions (files directly in $dir).
node_dir() { if [ "$nodes" = 1 ]; then echo "$dir"; else echo "$dir/node-$1"; fi; }
node_port() { echo $((port + $1 - 1)); }
node_controller_port() { echo $((controller_port + $1 - 1)); }
node_internal_port() { echo $((internal_port + $1 - 1)); }
pidfile() { echo "$(node_dir "$1")/kafka.pid"; }
logfile() { echo "$(node_dir "$1")/kafka.log"; }
props() { echo "$(node_dir "$1")/server.properties"; }
bootstrap() {
  local list="" i
  for i in $(seq 1 "$nodes"); do list="${list:+$list,}127.0.0.1:$(node_port "$i")"; done
  echo "$list"
}

running_pid() {
  local file; file="$(pidfile "$1")"
  [ -f "$file" ] || return 1
  local pid; pid="$(cat "$file")"
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
  local i="$1" voters="" v
  for v in $(seq 1 "$nodes"); do voters="${voters:+$voters,}$v@127.0.0.1:$(node_controller_port "$v")"; done
  mkdir -p "$(node_dir "$i")/data"
  {
    echo "process.roles=broker,controller"
    echo "node.id=$i"
    if [ "$nodes" = 1 ]; then
      echo "controller.quorum.bootstrap.servers=127.0.0.1:$(node_controller_port 1)"
    else
      echo "controller.quorum.voters=$voters"
    fi
    if [ "$security" = sasl_ssl ]; then
      local password store_password
      password="$(cat "$secrets/client.password")"
      store_password="$(cat "$secrets/store.password")"
      cat <<PROPS
listeners=CLIENT://127.0.0.1:$(node_port "$i"),INTERNAL://127.0.0.1:$(node_internal_port "$i"),CONTROLLER://127.0.0.1:$(node_controller_port "$i")
advertised.listeners=CLIENT://127.0.0.1:$(node_port "$i"),INTERNAL://127.0.0.1:$(node_internal_port "$i")
listener.security.protocol.map=CLIENT:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=INTERNAL
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.client.ssl.keystore.type=PKCS12
listener.name.client.ssl.keystore.location=$secrets/broker.p12
listener.name.client.ssl.keystore.password=$store_password
listener.name.client.ssl.key.password=$store_password
listener.name.client.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$client_user="$password";
listener.name.client.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
PROPS
    else
      cat <<PROPS
listeners=PLAINTEXT://127.0.0.1:$(node_port "$i"),CONTROLLER://127.0.0.1:$(node_controller_port "$i")
advertised.listeners=PLAINTEXT://127.0.0.1:$(node_port "$i")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
PROPS
    fi
    cat <<PROPS
controller.listener.names=CONTROLLER
log.dirs=$(node_dir "$i")/data
num.partitions=1
default.replication.factor=$replication
offsets.topic.replication.factor=$replication
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$replication
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=$replication
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=24
PROPS
  } >"$(props "$i")"
  chmod 600 "$(props "$i")"
}

# A CA, a broker certificate it signed (for 127.0.0.1 and localhost), the client's password, and client.env.
# Made once per data directory; every node uses the same certificate.
make_secrets() {
  [ -f "$secrets/ca.pem" ] && [ -f "$secrets/broker.p12" ] && return 0
  need keytool "it comes with the Java runtime (apt-get install openjdk-17-jre-headless)"
  rm -rf "$secrets"; mkdir -p "$secrets"; chmod 700 "$secrets"
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secrets/store.password"
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secrets/client.password"
  local pw; pw="$(cat "$secrets/store.password")"
  local kt=(keytool -storetype PKCS12 -storepass "$pw" -keypass "$pw")
  {
    "${kt[@]}" -genkeypair -keystore "$secrets/ca.p12" -alias ca -dname "CN=kafka-local CA" -keyalg RSA -keysize 2048 \
      -validity 3650 -ext bc:c
    "${kt[@]}" -exportcert -keystore "$secrets/ca.p12" -alias ca -rfc -file "$secrets/ca.pem"
    "${kt[@]}" -genkeypair -keystore "$secrets/broker.p12" -alias broker -dname "CN=localhost" -keyalg RSA -keysize 2048 -validity 3650
    "${kt[@]}" -certreq -keystore "$secrets/broker.p12" -alias broker -file "$secrets/broker.csr"
    "${kt[@]}" -gencert -keystore "$secrets/ca.p12" -alias ca -infile "$secrets/broker.csr" -outfile "$secrets/broker.pem" -rfc \
      -validity 3650 -ext SAN=dns:localhost,ip:127.0.0.1 -ext KU=digitalSignature,keyEncipherment -ext EKU=serverAuth
    "${kt[@]}" -importcert -keystore "$secrets/broker.p12" -alias ca -file "$secrets/ca.pem" -noprompt
    "${kt[@]}" -importcert -keystore "$secrets/broker.p12" -alias broker -file "$secrets/broker.pem" -noprompt
  } >"$secrets/keytool.log" 2>&1 || { tail -n 20 "$secrets/keytool.log" >&2; rm -f "$secrets/ca.pem"; die "making the TLS certificates failed"; }
  chmod 600 "$secrets"/*
}

write_client_env() {
  cat >"$base_dir/client.env" <<ENV
KAFKA_BROKERS=$(bootstrap)
KAFKA_SSL=true
KAFKA_SSL_CA_FILE=$secrets/ca.pem
KAFKA_SASL_MECHANISM=SCRAM-SHA-512
KAFKA_SASL_USERNAME=$client_user
KAFKA_SASL_PASSWORD_FILE=$secrets/client.password
ENV
  chmod 600 "$base_dir/client.env"
}

java_args() {
  JAVA_ARGS=(java -Xms128m "-Xmx$heap" -XX:+UseG1GC -Djava.awt.headless=true
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn
    -Dorg.slf4j.simpleLogger.log.kafka.server.KafkaRaftServer=info
    -cp "$lib/*")
}

cluster_id() {
  local file="$dir/cluster.id" id="-"
  if [ ! -f "$file" ]; then
    # 16 random bytes, URL-safe base64 without padding; one starting with '-' would read as an option.
    while [ "${id#-}" != "$id" ]; do id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"; done
    mkdir -p "$dir"; echo "$id" >"$file"
  fi
  cat "$file"
}

format_storage() {
  local i="$1"
  [ -f "$(node_dir "$i")/data/meta.properties" ] && return 0
  local mode=()
  [ "$nodes" = 1 ] && mode=(--standalone)
  if [ "$security" = sasl_ssl ]; then
    local password; password="$(cat "$secrets/client.password")"
    mode+=(--add-scram "SCRAM-SHA-256=[name=$client_user,password=$password]" --add-scram "SCRAM-SHA-512=[name=$client_user,password=$password]")
  fi
  java_args; "${JAVA_ARGS[@]}" kafka.tools.StorageTool format -t "$(cluster_id)" -c "$(props "$i")" "${mode[@]}" >>"$(logfile "$i")" 2>&1 \
    || { tail -n 20 "$(logfile "$i")" >&2; die "formatting the KRaft storage of node $i failed"; }
}

launch_node() {
  local i="$1" pid
  if pid="$(running_pid "$i")" && port_open "$(node_port "$i")"; then
    say "reusing node $i already running (pid $pid) on 127.0.0.1:$(node_port "$i")"; return 0
  fi
  port_open "$(node_port "$i")" && die "127.0.0.1:$(node_port "$i") is taken by a process this script did not start; set KAFKA_BROKERS to use it, or KAFKA_LOCAL_PORT to pick another port"
  write_properties "$i"
  : >"$(logfile "$i")"
  format_storage "$i"
  say "starting node $i on 127.0.0.1:$(node_port "$i") (log: $(logfile "$i"))"
  # setsid: the broker must outlive the shell that started it, and not get the terminal's Ctrl-C.
  java_args
  setsid "${JAVA_ARGS[@]}" kafka.Kafka "$(props "$i")" >>"$(logfile "$i")" 2>&1 </dev/null &
  echo $! >"$(pidfile "$i")"
}

wait_node() {
  local i="$1" waited=0
  until port_open "$(node_port "$i")" && grep -q "Kafka Server started" "$(logfile "$i")"; do
    if ! running_pid "$i" >/dev/null; then tail -n 30 "$(logfile "$i")" >&2; die "node $i exited during start"; fi
    if [ "$waited" -ge $((start_timeout * 5)) ]; then tail -n 30 "$(logfile "$i")" >&2; die "node $i did not answer within ${start_timeout}s"; fi
    sleep 0.2; waited=$((waited + 1))
  done
  say "node $i ready after $((waited / 5)).$((waited % 5 * 2))s"
}

start() {
  need java "install a Java 17+ runtime (apt-get install openjdk-17-jre-headless) to run the local broker"
  mkdir -p "$dir"
  resolve
  [ "$security" = sasl_ssl ] && make_secrets
  local i
  # All nodes first, then the waits: a quorum of three needs two voters up before any node finishes starting.
  for i in $(seq 1 "$nodes"); do launch_node "$i"; done
  for i in $(seq 1 "$nodes"); do wait_node "$i"; done
  if [ "$security" = sasl_ssl ]; then write_client_env; say "SASL_SSL: the apps' settings are in $base_dir/client.env"; fi
  bootstrap
}

start_node() {
  local i="$1"
  [ "$i" -ge 1 ] && [ "$i" -le "$nodes" ] || die "no node $i (KAFKA_LOCAL_BROKERS=$nodes)"
  resolve
  launch_node "$i"
  wait_node "$i"
}

kill_node() {
  local i="$1" pid
  pid="$(running_pid "$i")" || die "node $i is not running"
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$(pidfile "$i")"
  say "node $i killed (pid $pid)"
}

stop_node() {
  local i="$1" pid
  if ! pid="$(running_pid "$i")"; then rm -f "$(pidfile "$i")"; return 0; fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    say "node $i did not stop in 30s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    # Gone, not just signalled: a start right after must find its port free.
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$(pidfile "$i")"
  say "node $i stopped"
}

stop() {
  local i
  # In parallel: stopping one at a time, the last nodes of a quorum wait for controllers already gone.
  for i in $(seq 1 "$nodes"); do stop_node "$i" & done
  wait
}

status() {
  local i all=0 pid
  for i in $(seq 1 "$nodes"); do
    if pid="$(running_pid "$i")" && port_open "$(node_port "$i")"; then
      echo "node $i: up (pid $pid) on 127.0.0.1:$(node_port "$i")"
    else
      echo "node $i: down (127.0.0.1:$(node_port "$i"))"; all=1
    fi
  done
  return "$all"
}

case "${1:-}" in
  resolve) resolve ;;
  start) start ;;
  stop) stop ;;
  status) status >&2 ;;
  brokers) bootstrap ;;
  pids) for i in $(seq 1 "$nodes"); do running_pid "$i" || true; done ;;
  kill-node) kill_node "${2:?usage: $0 kill-node I}" ;;
  stop-node) stop_node "${2:?usage: $0 stop-node I}" ;;
  start-node) start_node "${2:?usage: $0 start-node I}" ;;
  *) echo "usage: $0 resolve|start|stop|status|brokers|kill-node I|stop-node I|start-node I" >&2; exit 2 ;;
esac
