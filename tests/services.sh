#!/usr/bin/env bash
# Servers the integration tests talk to, on loopback: an S3-compatible store (moto).
#
#   eval "$(tests/services.sh start)"   # installs moto if missing, starts it, prints exports
#   cargo test -p weir-checkpoint       # S3 tests now run against it
#   tests/services.sh stop              # stops what `start` started
#
# `start` prints only `export NAME=value` lines on stdout (progress goes to stderr):
# WEIR_TEST_S3_ENDPOINT, and fixed test credentials AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_REGION (moto accepts any).
#
# Everything lives under ${WEIR_SERVICES_DIR:-$HOME/.cache/weir-services}: the
# virtualenv (moto from PyPI, installed once), pid and log files.
set -euo pipefail

SERVICES_DIR="${WEIR_SERVICES_DIR:-${HOME}/.cache/weir-services}"
VENV="${SERVICES_DIR}/venv-moto"
PID_FILE="${SERVICES_DIR}/moto.pid"
PORT_FILE="${SERVICES_DIR}/moto.port"
LOG_FILE="${SERVICES_DIR}/moto.log"
MOTO_VERSION_SPEC="${WEIR_MOTO_VERSION_SPEC:-moto[server]>=5,<6}"

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

running() {
    [ -f "${PID_FILE}" ] && kill -0 "$(cat "${PID_FILE}")" 2>/dev/null
}

print_exports() {
    local port="$1"
    echo "export WEIR_TEST_S3_ENDPOINT=http://127.0.0.1:${port}"
    echo "export AWS_ACCESS_KEY_ID=test"
    echo "export AWS_SECRET_ACCESS_KEY=test"
    echo "export AWS_REGION=us-east-1"
}

start() {
    install_moto
    if running && [ -f "${PORT_FILE}" ] && answers "$(cat "${PORT_FILE}")"; then
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
    echo "${pid}" >"${PID_FILE}"
    echo "${port}" >"${PORT_FILE}"
    for _ in $(seq 1 120); do
        if answers "${port}"; then
            log "moto listening on 127.0.0.1:${port} (pid ${pid}, log ${LOG_FILE})"
            print_exports "${port}"
            return 0
        fi
        if ! kill -0 "${pid}" 2>/dev/null; then
            log "moto exited at start; its log:"
            cat "${LOG_FILE}" >&2
            rm -f "${PID_FILE}" "${PORT_FILE}"
            return 1
        fi
        sleep 0.5
    done
    log "moto did not answer on port ${port} within 60 s; its log:"
    cat "${LOG_FILE}" >&2
    stop
    return 1
}

stop() {
    if [ -f "${PID_FILE}" ]; then
        local pid
        pid="$(cat "${PID_FILE}")"
        if kill -0 "${pid}" 2>/dev/null; then
            kill "${pid}" 2>/dev/null || true
            for _ in $(seq 1 20); do
                kill -0 "${pid}" 2>/dev/null || break
                sleep 0.25
            done
            kill -9 "${pid}" 2>/dev/null || true
            log "moto stopped (pid ${pid})"
        fi
        rm -f "${PID_FILE}" "${PORT_FILE}"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *)
        echo "usage: $0 start|stop   (eval \"\$($0 start)\" to export the endpoint)" >&2
        exit 2
        ;;
esac
