#!/usr/bin/env bash
# scripts/kafka.sh — a throwaway single-node Apache Kafka (KRaft) broker for
# local development and integration tests. Listens on 127.0.0.1 only.
#
# Usage:
#   scripts/kafka.sh start     fetch Kafka (first run only), format a fresh KRaft
#                              store in a temp dir, start the broker, wait until
#                              it answers; already running -> says so, exit 0
#   scripts/kafka.sh stop      SIGTERM, wait up to 30 s, then SIGKILL; removes the
#                              temp dir, state and env file; ok if not running
#   scripts/kafka.sh pause     stop the broker cleanly (SIGTERM, wait up to 30 s, then
#                              SIGKILL) but KEEP its temp dir (data, server.properties,
#                              SCRAM credentials) and the env file, for broker-restart
#                              tests; already paused -> says so, exit 0
#   scripts/kafka.sh resume    relaunch a paused broker on the same temp dir, data
#                              and ports (no format), wait until it answers; errors
#                              unless the broker is paused
#   scripts/kafka.sh status    exit 0 if running, 3 if not (also when paused)
#   scripts/kafka.sh restart   stop + start (a fresh, empty broker)
#
# While paused, start refuses (resume or stop first) and stop removes the kept
# temp dir, state and env file.
#
# Works from any cwd. Needs Java 17+ (java, keytool) and Maven (mvn) for the
# first download only; kcat is NOT needed. Note: SCRAM against Kafka 4.x fails
# with librdkafka older than 2.6.1 (e.g. Debian 12's kcat, librdkafka 2.0.2);
# Go (segmentio/kafka-go), Java and newer librdkafka clients work.
#
# Listeners (all on 127.0.0.1):
#   PLAINTEXT   ${KAFKA_PORT:-9092}              clients, inter-broker
#   CONTROLLER  ${KAFKA_CONTROLLER_PORT:-9093}   KRaft quorum
#   SASL_SSL    ${KAFKA_SASL_PORT:-9094}         SCRAM-SHA-512 / SCRAM-SHA-256 over TLS,
#               user ${KAFKA_SASL_USER:-virality}, password ${KAFKA_SASL_PASSWORD:-virality-secret};
#               server cert (SAN IP:127.0.0.1, DNS:localhost) signed by a throwaway CA
#               whose PEM is .cache/kafka/tls/ca.pem
#
# Environment:
#   KAFKA_VERSION          Kafka version to use (default: newest 4.x from Maven
#                          Central, resolved once and remembered in .cache/kafka/version)
#   KAFKA_REFRESH=1        forget the remembered version and resolve the newest again
#   KAFKA_PORT, KAFKA_CONTROLLER_PORT, KAFKA_SASL_PORT, KAFKA_SASL_USER,
#   KAFKA_SASL_PASSWORD    see above (user/password: letters, digits, . _ @ + -)
#   KAFKA_HEAP             broker -Xmx (default 512m)
#   KAFKA_START_TIMEOUT    seconds to wait for the broker (default 60)
#   KAFKA_MVN_ARGS         extra arguments for mvn (e.g. "-o")
#
# For tests: while the broker runs (or is paused), .cache/kafka/env holds KEY=value lines
# (no quotes) that a shell can source or a test can parse:
#   KAFKA_BROKERS=127.0.0.1:9092
#   KAFKA_SASL_BROKERS=127.0.0.1:9094
#   KAFKA_SASL_MECHANISM=SCRAM-SHA-512
#   KAFKA_SASL_USER=virality
#   KAFKA_SASL_PASSWORD=virality-secret
#   KAFKA_TLS_CA=<absolute path of ca.pem>
#   KAFKA_VERSION=<version>
# e.g.  scripts/kafka.sh start && set -a && . .cache/kafka/env && set +a && go test ./...
# Topic auto-creation is off: tests create their topics (admin API), or use
#   java -cp ".cache/kafka/$KAFKA_VERSION/libs/*" org.apache.kafka.tools.TopicCommand \
#        --bootstrap-server 127.0.0.1:9092 --create --topic T --partitions 1
#
# Files: .cache/kafka/<version>/libs (jars), .cache/kafka/tls (keystore, ca.pem),
# .cache/kafka/state (pid, temp dir, ports, PAUSED=1 while paused), .cache/kafka/env;
# broker data and its log (kafka.log; logs of earlier runs of a resumed broker are
# kafka.log.1, kafka.log.2, ...) live in a mktemp -d directory named in the state file.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CACHE="$ROOT/.cache/kafka"
STATE="$CACHE/state"
ENVFILE="$CACHE/env"
TLS="$CACHE/tls"
HOST=127.0.0.1

PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
SASL_PORT="${KAFKA_SASL_PORT:-9094}"
SASL_USER="${KAFKA_SASL_USER:-virality}"
SASL_PASSWORD="${KAFKA_SASL_PASSWORD:-virality-secret}"
HEAP="${KAFKA_HEAP:-512m}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"

# Tried from newest down when Maven's version range does not give one that resolves.
CANDIDATES=(4.4.0 4.3.1 4.3.0 4.2.2 4.2.1 4.2.0 4.1.2 4.1.1 4.1.0 4.0.2 4.0.1 4.0.0)

JAVA="java"
[[ -n "${JAVA_HOME:-}" && -x "${JAVA_HOME}/bin/java" ]] && JAVA="${JAVA_HOME}/bin/java"
KEYTOOL="keytool"
[[ -n "${JAVA_HOME:-}" && -x "${JAVA_HOME}/bin/keytool" ]] && KEYTOOL="${JAVA_HOME}/bin/keytool"

log() { echo "kafka: $*"; }
die() { echo "kafka: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- helpers

port_open() { # host port -> 0 if something accepts a TCP connection
  timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

check_java() {
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (Java 17+ needed)"
  local v
  v="$("$JAVA" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
  local major="${v%%.*}"
  [[ "$major" == 1 ]] && major="$(echo "$v" | cut -d. -f2)"
  [[ "$major" =~ ^[0-9]+$ && "$major" -ge 17 ]] || die "Java 17+ needed, found '$v' ($JAVA)"
}

validate_inputs() {
  local p
  for p in "$PORT" "$CONTROLLER_PORT" "$SASL_PORT"; do
    [[ "$p" =~ ^[0-9]+$ && "$p" -gt 0 && "$p" -lt 65536 ]] || die "bad port '$p'"
  done
  [[ "$PORT" != "$CONTROLLER_PORT" && "$PORT" != "$SASL_PORT" && "$CONTROLLER_PORT" != "$SASL_PORT" ]] \
    || die "KAFKA_PORT, KAFKA_CONTROLLER_PORT and KAFKA_SASL_PORT must differ"
  [[ "$SASL_USER" =~ ^[A-Za-z0-9._@+-]+$ ]] || die "KAFKA_SASL_USER may hold only letters, digits and . _ @ + -"
  [[ "$SASL_PASSWORD" =~ ^[A-Za-z0-9._@+-]+$ ]] || die "KAFKA_SASL_PASSWORD may hold only letters, digits and . _ @ + -"
  [[ "$START_TIMEOUT" =~ ^[0-9]+$ ]] || die "bad KAFKA_START_TIMEOUT '$START_TIMEOUT'"
}

# Is the pid in the state file our broker? (guards against recycled pids)
pid_is_ours() { # pid tmpdir
  local pid="$1" dir="$2"
  [[ -n "$pid" && "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || { kill -0 "$pid" 2>/dev/null; return; }
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir/server.properties"
}

load_state() { # sets S_PID S_DIR S_VERSION S_PORT S_SASL_PORT S_CONTROLLER_PORT S_PAUSED
  S_PID="" S_DIR="" S_VERSION="" S_PORT="" S_SASL_PORT="" S_CONTROLLER_PORT="" S_PAUSED=""
  [[ -f "$STATE" ]] || return 1
  local k v
  while IFS='=' read -r k v; do
    case "$k" in
      PID) S_PID="$v" ;; DIR) S_DIR="$v" ;; VERSION) S_VERSION="$v" ;;
      PORT) S_PORT="$v" ;; SASL_PORT) S_SASL_PORT="$v" ;; CONTROLLER_PORT) S_CONTROLLER_PORT="$v" ;;
      PAUSED) S_PAUSED="$v" ;;
    esac
  done <"$STATE"
  return 0
}

# Written via a temp file + mv so that a reader never sees half a state file.
write_state() { # pid dir version port sasl_port controller_port [paused(0|1)]
  printf 'PID=%s\nDIR=%s\nVERSION=%s\nPORT=%s\nSASL_PORT=%s\nCONTROLLER_PORT=%s\nPAUSED=%s\n' \
    "$1" "$2" "$3" "$4" "$5" "$6" "${7:-0}" >"$STATE.tmp"
  mv -f "$STATE.tmp" "$STATE"
}

is_running() { load_state && pid_is_ours "$S_PID" "$S_DIR"; }

# Paused: the state names no live broker, but a kept temp dir that resume can use.
is_paused() {
  load_state && [[ "$S_PAUSED" == 1 ]] && ! pid_is_ours "$S_PID" "$S_DIR" \
    && [[ -n "$S_DIR" && -f "$S_DIR/.virality-kafka" && -f "$S_DIR/server.properties" ]]
}

remove_tmpdir() { # only ever removes a directory this script made
  local d="$1"
  [[ -n "$d" && -d "$d" && "$(basename "$d")" == virality-kafka.* && -f "$d/.virality-kafka" ]] && rm -rf -- "$d"
  return 0
}

# Path of the first class (dotted name) that exists in the jars, as its name.
find_class() { # libsdir class...
  local libs="$1" c; shift
  for c in "$@"; do
    if LC_ALL=C grep -qaF -- "${c//.//}.class" "$libs"/*.jar 2>/dev/null; then echo "$c"; return 0; fi
  done
  return 1
}

# ---------------------------------------------------------------- fetching

mvn_run() { # logfile args...
  local logf="$1"; shift
  # shellcheck disable=SC2086
  mvn -B -ntp ${KAFKA_MVN_ARGS:-} "$@" >>"$logf" 2>&1
}

write_pom() { # file version-or-range exclude-transitive(0|1)
  local f="$1" v="$2" excl="$3" x=""
  [[ "$excl" == 1 ]] && x='<exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions>'
  cat >"$f" <<EOF
<project>
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.virality</groupId>
  <artifactId>kafka-fetch</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$v</version>$x
    </dependency>
$( [[ "$excl" == 1 ]] || echo "    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$v</version></dependency>" )
  </dependencies>
</project>
EOF
}

# Newest 4.x of kafka_2.13 per Maven's version range (reads maven-metadata through mvn).
newest_by_range() {
  local work="$CACHE/resolve" out
  rm -rf "$work"; mkdir -p "$work"
  write_pom "$work/pom.xml" "[4.0.0,5.0.0)" 1
  if mvn_run "$work/mvn.log" -q -f "$work/pom.xml" dependency:list -DoutputFile="$work/list.txt"; then
    out="$(sed -n 's/.*org\.apache\.kafka:kafka_2\.13:jar:\([^:]*\):.*/\1/p' "$work/list.txt" | head -1)"
    # plain 4.x.y releases only (a range would also admit qualifiers such as -alpha)
    [[ "$out" =~ ^4\.[0-9]+\.[0-9]+$ ]] && { echo "$out"; return 0; }
  fi
  return 1
}

jar_version() { # dir artifact -> version of dir/artifact-<version>.jar, or nothing
  local f
  for f in "$1/$2"-[0-9]*.jar; do
    [[ -f "$f" ]] || continue
    f="$(basename "$f" .jar)"; echo "${f#"$2"-}"; return 0
  done
  return 0
}

# Download kafka_2.13 + kafka-tools <v> with runtime deps and a logging backend into .cache/kafka/<v>/libs.
fetch_version() { # version
  local v="$1" dir="$CACHE/$1"
  [[ -f "$dir/libs/.complete" ]] && return 0
  command -v mvn >/dev/null 2>&1 || die "mvn not found (needed once to download Kafka $v)"
  log "downloading Apache Kafka $v and its dependencies with mvn ..."
  mkdir -p "$dir"
  local tmp="$dir/libs.tmp" logf="$dir/mvn.log"
  rm -rf "$tmp" "$dir/libs"; : >"$logf"
  write_pom "$dir/pom.xml" "$v" 0
  if ! mvn_run "$logf" -f "$dir/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp"; then
    log "Kafka $v did not resolve (see $logf)"; rm -rf "$tmp"; return 1
  fi
  # Logging backend: Kafka 4 logs through slf4j and ships log4j2; add the matching binding.
  local slf log4j art=""
  slf="$(jar_version "$tmp" slf4j-api)"
  log4j="$(jar_version "$tmp" log4j-api)"
  if [[ -n "$log4j" && -n "$slf" ]]; then
    if [[ "$slf" == 1.* ]]; then art="org.apache.logging.log4j:log4j-slf4j-impl:$log4j"
    else art="org.apache.logging.log4j:log4j-slf4j2-impl:$log4j"; fi
    mvn_run "$logf" dependency:copy -Dartifact="$art" -DoutputDirectory="$tmp" || { log "could not fetch $art"; rm -rf "$tmp"; return 1; }
    if [[ -z "$(jar_version "$tmp" log4j-core)" ]]; then
      mvn_run "$logf" dependency:copy -Dartifact="org.apache.logging.log4j:log4j-core:$log4j" -DoutputDirectory="$tmp" \
        || { log "could not fetch log4j-core $log4j"; rm -rf "$tmp"; return 1; }
    fi
  elif [[ -n "$slf" ]]; then
    mvn_run "$logf" dependency:copy -Dartifact="org.slf4j:slf4j-simple:$slf" -DoutputDirectory="$tmp" \
      || { log "could not fetch slf4j-simple $slf"; rm -rf "$tmp"; return 1; }
  fi
  find_class "$tmp" kafka.Kafka >/dev/null || { log "Kafka $v: no broker main class in the jars"; rm -rf "$tmp"; return 1; }
  echo "$v" >"$tmp/.complete"
  mv "$tmp" "$dir/libs"
  local n; n="$(find "$dir/libs" -maxdepth 1 -name '*.jar' | wc -l)"
  log "cached $n jars in ${dir#"$ROOT"/}/libs"
}

# Sets VERSION and LIBS.
ensure_kafka() {
  mkdir -p "$CACHE"
  if [[ -n "${KAFKA_VERSION:-}" ]]; then
    VERSION="$KAFKA_VERSION"
    fetch_version "$VERSION" || die "Kafka $VERSION could not be fetched"
  else
    local remembered=""
    [[ -f "$CACHE/version" && "${KAFKA_REFRESH:-0}" != 1 ]] && remembered="$(cat "$CACHE/version")"
    if [[ -n "$remembered" && -f "$CACHE/$remembered/libs/.complete" ]]; then
      VERSION="$remembered"
    else
      local newest="" v tried=() ok=""
      command -v mvn >/dev/null 2>&1 || die "mvn not found (needed once to download Kafka)"
      log "resolving the newest Apache Kafka 4.x ..."
      newest="$(newest_by_range || true)"
      [[ -n "$newest" ]] && tried+=("$newest")
      for v in "${CANDIDATES[@]}"; do
        # only candidates not newer than what the range found (if it found one)
        if [[ -n "$newest" ]] && [[ "$(printf '%s\n%s\n' "$v" "$newest" | sort -V | tail -1)" != "$newest" ]]; then continue; fi
        [[ "$v" == "$newest" ]] || tried+=("$v")
      done
      for v in "${tried[@]}"; do
        if fetch_version "$v"; then ok="$v"; break; fi
      done
      [[ -n "$ok" ]] || die "no Kafka 4.x version could be fetched (tried: ${tried[*]})"
      VERSION="$ok"
      echo "$VERSION" >"$CACHE/version"
    fi
  fi
  LIBS="$CACHE/$VERSION/libs"
}

# ---------------------------------------------------------------- TLS

ensure_tls() {
  mkdir -p "$TLS"
  if [[ -s "$TLS/ca.pem" && -s "$TLS/broker.p12" && -s "$TLS/store.pass" ]] \
     && "$KEYTOOL" -list -keystore "$TLS/broker.p12" -storetype PKCS12 -storepass "$(cat "$TLS/store.pass")" >/dev/null 2>&1; then
    return 0
  fi
  log "making a throwaway CA and broker certificate (keytool) ..."
  rm -f "$TLS"/ca.p12 "$TLS"/ca.pem "$TLS"/broker.p12 "$TLS"/broker.csr "$TLS"/broker.pem "$TLS"/store.pass
  local pw
  pw="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  ( umask 077; echo "$pw" >"$TLS/store.pass" )
  local kt=("$KEYTOOL" -storetype PKCS12 -storepass "$pw" -keypass "$pw")
  "${kt[@]}" -genkeypair -keystore "$TLS/ca.p12" -alias ca -keyalg RSA -keysize 2048 -validity 3650 \
    -dname "CN=virality-dev-kafka-ca" -ext bc:c -ext KU=keyCertSign,cRLSign >/dev/null 2>&1
  "${kt[@]}" -exportcert -rfc -keystore "$TLS/ca.p12" -alias ca -file "$TLS/ca.pem" >/dev/null 2>&1
  "${kt[@]}" -genkeypair -keystore "$TLS/broker.p12" -alias broker -keyalg RSA -keysize 2048 -validity 3650 \
    -dname "CN=localhost" >/dev/null 2>&1
  "${kt[@]}" -certreq -keystore "$TLS/broker.p12" -alias broker -file "$TLS/broker.csr" >/dev/null 2>&1
  "${kt[@]}" -gencert -keystore "$TLS/ca.p12" -alias ca -infile "$TLS/broker.csr" -outfile "$TLS/broker.pem" -rfc \
    -validity 3650 -ext "SAN=IP:127.0.0.1,DNS:localhost" -ext KU=digitalSignature,keyEncipherment -ext EKU=serverAuth >/dev/null 2>&1
  "${kt[@]}" -importcert -noprompt -keystore "$TLS/broker.p12" -alias ca -file "$TLS/ca.pem" >/dev/null 2>&1
  "${kt[@]}" -importcert -noprompt -keystore "$TLS/broker.p12" -alias broker -file "$TLS/broker.pem" >/dev/null 2>&1
  # A truststore with the CA for Java clients (same password as store.pass).
  "${kt[@]}" -importcert -noprompt -keystore "$TLS/truststore.p12" -alias ca -file "$TLS/ca.pem" >/dev/null 2>&1 || true
  rm -f "$TLS/broker.csr"
  [[ -s "$TLS/ca.pem" && -s "$TLS/broker.p12" ]] || die "keytool failed to make the certificates"
}

# ---------------------------------------------------------------- commands

new_cluster_id() { # 16 random bytes, base64url without padding (Kafka's Uuid format), not starting with '-'
  local id
  while :; do
    id="$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" != -* && ${#id} -eq 22 ]] && { echo "$id"; return; }
  done
}

write_env() {
  local tmp="$ENVFILE.tmp"
  cat >"$tmp" <<EOF
KAFKA_BROKERS=$HOST:$PORT
KAFKA_SASL_BROKERS=$HOST:$SASL_PORT
KAFKA_SASL_MECHANISM=SCRAM-SHA-512
KAFKA_SASL_USER=$SASL_USER
KAFKA_SASL_PASSWORD=$SASL_PASSWORD
KAFKA_TLS_CA=$TLS/ca.pem
KAFKA_VERSION=$VERSION
EOF
  mv "$tmp" "$ENVFILE"
}

banner() { # version port sasl_port
  echo "kafka: Apache Kafka $1 on $HOST:$2 (SASL_SSL SCRAM on $HOST:$3, CA $TLS/ca.pem)"
}

check_ports_free() { # [hint]; uses PORT CONTROLLER_PORT SASL_PORT
  local p hint="${1:-set KAFKA_PORT / KAFKA_CONTROLLER_PORT / KAFKA_SASL_PORT}"
  for p in "$PORT" "$CONTROLLER_PORT" "$SASL_PORT"; do
    port_open "$HOST" "$p" && die "port $HOST:$p is already in use (another Kafka?); $hint"
  done
  return 0
}

find_broker_classes() { # sets MAIN and APIV (may be empty) from LIBS
  MAIN="$(find_class "$LIBS" kafka.Kafka org.apache.kafka.server.Kafka)" || die "no broker main class in $LIBS"
  APIV="$(find_class "$LIBS" org.apache.kafka.tools.BrokerApiVersionsCommand kafka.admin.BrokerApiVersionsCommand || true)"
}

set_toolopts() { # dir -> TOOLOPTS: JVM options for the short-lived tools (format, readiness probe)
  TOOLOPTS=(-Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$1/tools-log4j2.properties"
            -Dlog4j.configurationFile="$1/tools-log4j2.properties" -cp "$LIBS/*")
}

# Launch the broker on the (already formatted) dir/server.properties, record its
# pid in the state file and wait until it answers a real request, then write the
# env file and print the banner. Shared by start and resume. Uses VERSION LIBS
# PORT SASL_PORT CONTROLLER_PORT MAIN APIV TOOLOPTS. If it does not come up it is
# stopped and the script exits 1, after
#   discard: removing the temp dir, state and env file (start), or
#   keep:    keeping the temp dir and env file, state back to paused (resume).
launch_broker() { # dir discard|keep t0
  local dir="$1" on_fail="$2" t0="$3"
  log "starting Apache Kafka $VERSION (data and log in $dir) ..."
  local launcher=()
  command -v setsid >/dev/null 2>&1 && launcher=(setsid)
  # fd 9 (the lock) must not leak into the broker.
  "${launcher[@]}" "$JAVA" -Xmx"$HEAP" -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dlog4j.configurationFile="$dir/log4j2.properties" \
    -Dkafka.logs.dir="$dir/logs" -cp "$LIBS/*" "$MAIN" "$dir/server.properties" \
    </dev/null >"$dir/kafka.log" 2>&1 9>&- &
  local pid=$!
  write_state "$pid" "$dir" "$VERSION" "$PORT" "$SASL_PORT" "$CONTROLLER_PORT"

  local deadline=$((SECONDS + START_TIMEOUT)) ready="" why="did not answer within ${START_TIMEOUT}s" polls=0
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then why="exited during startup"; break; fi
    # Both client ports accept, and the broker logged that it started (or, should a
    # release word that line differently, every ~5 s anyway): ask it for real.
    if port_open "$HOST" "$PORT" && port_open "$HOST" "$SASL_PORT" \
       && { grep -q "Kafka Server started" "$dir/kafka.log" 2>/dev/null || (( ++polls % 10 == 0 )); }; then
      if [[ -z "$APIV" ]]; then sleep 2; ready=1; break; fi
      # A real request: ApiVersions/Metadata through the admin client.
      local left=$((deadline - SECONDS)); ((left < 5)) && left=5
      if timeout "$left" "$JAVA" "${TOOLOPTS[@]}" "$APIV" --bootstrap-server "$HOST:$PORT" >"$dir/apiversions.out" 2>&1; then
        ready=1; break
      fi
    fi
    sleep 0.5
  done

  if [[ -z "$ready" ]]; then
    echo "kafka: broker $why; last 50 lines of $dir/kafka.log:" >&2
    tail -n 50 "$dir/kafka.log" >&2 || true
    cp -f "$dir/kafka.log" "$CACHE/last-failed-start.log" 2>/dev/null || true
    stop_pid "$pid" "$dir"
    if [[ "$on_fail" == keep ]]; then
      write_state "" "$dir" "$VERSION" "$PORT" "$SASL_PORT" "$CONTROLLER_PORT" 1
      echo "kafka: still paused (data kept in $dir): '$0 resume' to retry, '$0 stop' to discard" >&2
    else
      remove_tmpdir "$dir"; rm -f "$STATE" "$ENVFILE"
    fi
    echo "kafka: log kept in $CACHE/last-failed-start.log" >&2
    exit 1
  fi

  write_env
  banner "$VERSION" "$PORT" "$SASL_PORT"
  echo "kafka: env file $ENVFILE (ready after $((SECONDS - t0)) s)"
}

cmd_start() {
  local t0=$SECONDS
  validate_inputs
  mkdir -p "$CACHE"
  if is_running; then
    log "already running (pid $S_PID)"
    banner "$S_VERSION" "$S_PORT" "$S_SASL_PORT"
    echo "kafka: env file $ENVFILE"
    return 0
  fi
  if is_paused; then
    die "the broker is paused (data kept in $S_DIR): '$0 resume' to continue it, or '$0 stop' to discard it first"
  fi
  if load_state; then # stale state from a broker that is gone
    remove_tmpdir "$S_DIR"; rm -f "$STATE" "$ENVFILE"
  fi
  check_java
  check_ports_free
  ensure_kafka
  ensure_tls

  local storage
  find_broker_classes
  storage="$(find_class "$LIBS" kafka.tools.StorageTool org.apache.kafka.tools.StorageTool)" || die "no StorageTool in $LIBS"

  local dir pw cid
  dir="$(mktemp -d -t virality-kafka.XXXXXX)"
  : >"$dir/.virality-kafka"
  pw="$(cat "$TLS/store.pass")"
  cid="$(new_cluster_id)"

  cat >"$dir/server.properties" <<EOF
# generated by scripts/kafka.sh — single-node KRaft broker+controller
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT,SASL_SSL://$HOST:$SASL_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT,SASL_SSL://$HOST:$SASL_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
inter.broker.listener.name=PLAINTEXT

sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$TLS/broker.p12
listener.name.sasl_ssl.ssl.keystore.password=$pw
listener.name.sasl_ssl.ssl.key.password=$pw
listener.name.sasl_ssl.ssl.client.auth=none

offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.partitions=1
# The tests publish generated likes whose event times, weeks in the past,
# are their record times: a time retention (7 days by default) would delete
# them while a test reads them. Topics that need a retention set their own.
log.retention.ms=-1
default.replication.factor=1
min.insync.replicas=1
log.dirs=$dir/data
metadata.log.dir=$dir/data
num.network.threads=2
num.io.threads=4
EOF

  cat >"$dir/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
  cat >"$dir/tools-log4j2.properties" <<'EOF'
status = error
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
EOF
  set_toolopts "$dir"

  # Remember the temp dir right away so that stop can always clean it up.
  write_state "" "$dir" "$VERSION" "$PORT" "$SASL_PORT" "$CONTROLLER_PORT"

  if ! "$JAVA" "${TOOLOPTS[@]}" "$storage" format --config "$dir/server.properties" --cluster-id "$cid" \
        --add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASSWORD]" \
        --add-scram "SCRAM-SHA-256=[name=$SASL_USER,password=$SASL_PASSWORD]" >"$dir/format.log" 2>&1; then
    cat "$dir/format.log" >&2
    remove_tmpdir "$dir"; rm -f "$STATE"
    die "kafka-storage format failed"
  fi

  launch_broker "$dir" discard "$t0"
}

stop_pid() { # pid dir: SIGTERM, wait up to 30 s, then SIGKILL
  local pid="$1" dir="$2" i
  pid_is_ours "$pid" "$dir" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 60; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.5
  done
  log "broker (pid $pid) ignored SIGTERM for 30 s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 20; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
  return 0
}

cmd_stop() {
  if ! load_state; then
    rm -f "$ENVFILE"
    log "not running"
    return 0
  fi
  if pid_is_ours "$S_PID" "$S_DIR"; then
    log "stopping (pid $S_PID) ..."
    stop_pid "$S_PID" "$S_DIR"
    if kill -0 "$S_PID" 2>/dev/null && pid_is_ours "$S_PID" "$S_DIR"; then
      die "broker pid $S_PID is still alive"
    fi
    log "stopped"
  elif [[ "$S_PAUSED" == 1 ]]; then
    log "was paused; removing its data${S_DIR:+ ($S_DIR)}"
  else
    log "not running (removing stale state)"
  fi
  remove_tmpdir "$S_DIR"
  rm -f "$STATE" "$ENVFILE"
}

cmd_pause() {
  if is_running; then
    log "pausing (pid $S_PID) ..."
    stop_pid "$S_PID" "$S_DIR"
    if kill -0 "$S_PID" 2>/dev/null && pid_is_ours "$S_PID" "$S_DIR"; then
      die "broker pid $S_PID is still alive"
    fi
    write_state "" "$S_DIR" "$S_VERSION" "$S_PORT" "$S_SASL_PORT" "$S_CONTROLLER_PORT" 1
    log "paused (data kept in $S_DIR)"
    return 0
  fi
  if is_paused; then
    log "already paused (data kept in $S_DIR)"
    return 0
  fi
  if load_state; then
    die "not running (stale state: broker pid ${S_PID:-?} is gone), nothing to pause; '$0 stop' clears it"
  fi
  die "not running, nothing to pause ('$0 start' first)"
}

cmd_resume() {
  local t0=$SECONDS
  validate_inputs
  if is_running; then
    die "already running (pid $S_PID), not paused; nothing to resume"
  fi
  if ! is_paused; then
    if load_state && [[ "$S_PAUSED" == 1 ]]; then
      die "paused, but its temp dir '${S_DIR}' is gone; '$0 stop' to clear the state, then '$0 start'"
    fi
    die "not paused, nothing to resume ('$0 pause' a running broker first, or '$0 start' a new one)"
  fi
  check_java
  local d="$S_DIR"
  # Same version, jars and ports as before the pause (server.properties has them baked in).
  VERSION="$S_VERSION" PORT="$S_PORT" SASL_PORT="$S_SASL_PORT" CONTROLLER_PORT="$S_CONTROLLER_PORT"
  [[ -n "$VERSION" && -n "$PORT" && -n "$SASL_PORT" && -n "$CONTROLLER_PORT" ]] || die "state file $STATE is incomplete; '$0 stop' and start afresh"
  LIBS="$CACHE/$VERSION/libs"
  [[ -f "$LIBS/.complete" ]] || die "the Kafka $VERSION jars are gone from $LIBS; cannot resume"
  # The server.properties names the keystore and its password as they were at start.
  local pw
  pw="$(sed -n 's/^listener\.name\.sasl_ssl\.ssl\.keystore\.password=//p' "$d/server.properties")"
  [[ -s "$TLS/broker.p12" && -s "$TLS/store.pass" && "$pw" == "$(cat "$TLS/store.pass")" ]] \
    || die "the TLS keystore in $TLS changed since the pause; '$0 stop' and start afresh"
  # The env file names the SCRAM user the store was formatted with: keep it as it was.
  if [[ -f "$ENVFILE" ]]; then
    local k v
    while IFS='=' read -r k v; do
      case "$k" in
        KAFKA_SASL_USER) SASL_USER="$v" ;; KAFKA_SASL_PASSWORD) SASL_PASSWORD="$v" ;;
      esac
    done <"$ENVFILE"
  fi
  check_ports_free "the paused broker needs the same ports again; free it, or '$0 stop' to discard the broker"
  find_broker_classes
  set_toolopts "$d"
  # Keep the log of the earlier run(s): kafka.log -> kafka.log.<n>.
  if [[ -f "$d/kafka.log" ]]; then
    local n=1
    while [[ -e "$d/kafka.log.$n" ]]; do n=$((n + 1)); done
    mv -f "$d/kafka.log" "$d/kafka.log.$n"
  fi
  launch_broker "$d" keep "$t0"
}

cmd_status() {
  if is_running; then
    echo "kafka: running (pid $S_PID), Apache Kafka $S_VERSION"
    echo "kafka:   PLAINTEXT  $HOST:$S_PORT"
    echo "kafka:   SASL_SSL   $HOST:$S_SASL_PORT (SCRAM-SHA-512/256, CA $TLS/ca.pem)"
    echo "kafka:   CONTROLLER $HOST:$S_CONTROLLER_PORT"
    echo "kafka:   data/log   $S_DIR (kafka.log)"
    echo "kafka:   env file   $ENVFILE"
    return 0
  fi
  if is_paused; then
    echo "kafka: paused (data kept in $S_DIR), Apache Kafka $S_VERSION; '$0 resume' to continue"
    return 3
  fi
  echo "kafka: not running"
  return 3
}

lock() { # serialise start/stop/pause/resume of this checkout
  command -v flock >/dev/null 2>&1 || return 0
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock -w 300 9 || die "another scripts/kafka.sh is busy (lock $CACHE/.lock)"
}

case "${1:-}" in
  start)   lock; cmd_start ;;
  stop)    lock; cmd_stop ;;
  restart) lock; cmd_stop; cmd_start ;;
  pause)   lock; cmd_pause ;;
  resume)  lock; cmd_resume ;;
  status)  cmd_status ;;
  *) echo "usage: $0 start|stop|status|restart|pause|resume" >&2; exit 2 ;;
esac
