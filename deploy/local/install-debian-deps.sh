#!/usr/bin/env bash
# Install the Debian packages behind Minqing's private dev/test stack (minqing/shell/devstack.py):
#   rabbitmq-server  RabbitMQ 3.10 + Erlang (rabbitmq-server, rabbitmqctl, erl, epmd)
#   postgresql-15    PostgreSQL 15 server (/usr/lib/postgresql/15/bin/{initdb,postgres})
#                    and, as a dependency, postgresql-client-15 (psql)
#   python3.11-venv  venv/ensurepip for the project's .venv, when Python 3.11 lacks them
#   util-linux       runuser (Essential on Debian, so normally present)
#   nginx            with --with-browser (make test): `nginx -t` and a real nginx in tests/deploy; never started as a service
#   prometheus       with --with-browser (make test), for `promtool`: checks and unit-tests the alert rules and dashboard queries
#   systemd          with --with-browser (make test): `systemd-analyze verify` on the shipped units (present on Debian 12 anyway)
#   chromium, fonts-noto-cjk  only with --with-browser (make test): the console's browser test and the test that opens a generated
#                    assessment report in a real browser and checks its charts render
#
# Idempotent: if everything is already there it prints nothing and exits 0 straight away.
# As root it runs apt-get, with a temporary /usr/sbin/policy-rc.d (exit 101) so that the
# packages' maintainer scripts do not start the system-wide RabbitMQ/PostgreSQL services; the
# private instances are started by devstack.py on their own ports.  (The postgresql package
# still creates its default, unstarted cluster "15/main" - devstack never uses it.)
# Not root: prints the command to run and exits 1.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
WITH_BROWSER=0
[ "${1:-}" = "--with-browser" ] && WITH_BROWSER=1
RABBIT_BIN=/usr/lib/rabbitmq/bin

installed() {  # installed PACKAGE: true if dpkg has it fully installed
    [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}

missing_packages() {
    local need=()
    if ! installed rabbitmq-server || [ ! -x "$RABBIT_BIN/rabbitmq-server" ] \
        || [ ! -x "$RABBIT_BIN/rabbitmqctl" ] || ! command -v epmd >/dev/null 2>&1; then
        need+=(rabbitmq-server)
    fi
    if [ ! -x "$PG_BIN/postgres" ] || [ ! -x "$PG_BIN/initdb" ] || [ ! -x "$PG_BIN/psql" ]; then
        need+=(postgresql-15)
    fi
    # Python 3.11 with venv (Debian splits ensurepip into python3.11-venv)
    if ! command -v python3.11 >/dev/null 2>&1; then
        need+=(python3.11 python3.11-venv)
    elif ! python3.11 -c 'import ensurepip' >/dev/null 2>&1; then
        need+=(python3.11-venv)
    fi
    if ! command -v runuser >/dev/null 2>&1 && [ ! -x /usr/sbin/runuser ] && [ ! -x /sbin/runuser ]; then
        need+=(util-linux)
    fi
    if [ "$WITH_BROWSER" = 1 ] && [ ! -x /usr/sbin/nginx ]; then
        need+=(nginx)
    fi
    if [ "$WITH_BROWSER" = 1 ] && ! command -v promtool >/dev/null 2>&1; then
        need+=(prometheus)
    fi
    if [ "$WITH_BROWSER" = 1 ] && ! command -v systemd-analyze >/dev/null 2>&1; then
        need+=(systemd)
    fi
    if [ "$WITH_BROWSER" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
        need+=(chromium)
    fi
    # the console's and the reports' Chinese text in headless Chromium's screenshots (issue #14)
    if [ "$WITH_BROWSER" = 1 ] && ! installed fonts-noto-cjk; then
        need+=(fonts-noto-cjk)
    fi
    echo "${need[@]+"${need[@]}"}"
}

PATH="$PATH:/usr/sbin:/sbin"
read -r -a need <<<"$(missing_packages)"
[ "${#need[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    {
        echo "Minqing needs these Debian packages for its private RabbitMQ/PostgreSQL: ${need[*]}"
        echo "Install them (system services are not started) with:"
        echo "    sudo bash $0"
        echo "or by hand:"
        echo "    sudo apt-get update && sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${need[*]}"
    } >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-debian-deps: apt-get not found; install ${need[*]} (or equivalents) by hand" >&2
    exit 1
fi

POLICY=/usr/sbin/policy-rc.d
MARKER="# temporary: created by minqing deploy/local/install-debian-deps.sh"
created_policy=0
cleanup() {
    # Remove the policy file only if we created it (and it is still ours).
    if [ "$created_policy" = 1 ] && grep -qxF "$MARKER" "$POLICY" 2>/dev/null; then
        rm -f "$POLICY"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

if [ ! -e "$POLICY" ] && [ ! -L "$POLICY" ]; then
    printf '#!/bin/sh\n%s\n# Do not start/restart services while packages are installed.\nexit 101\n' \
        "$MARKER" >"$POLICY"
    created_policy=1
    chmod 0755 "$POLICY"
fi

echo "install-debian-deps: installing ${need[*]} (system services will not be started)" >&2
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"

read -r -a still <<<"$(missing_packages)"
if [ "${#still[@]}" -ne 0 ]; then
    echo "install-debian-deps: still missing after apt-get: ${still[*]}" >&2
    exit 1
fi
