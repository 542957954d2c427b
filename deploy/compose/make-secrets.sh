#!/bin/sh
# Create ./secrets/ for compose.yaml once: random passwords, the URLs built from them, a vault key.
# Keep a copy of secrets/vault-key apart from the backups (docs/operations.md, "Back up").
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
[ -e secrets/postgres-password ] && { echo "secrets/ exists; not overwriting" >&2; exit 1; }
pg=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
mq=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
printf '%s' "$pg" > secrets/postgres-password
printf 'RABBITMQ_DEFAULT_PASS=%s\n' "$mq" > secrets/rabbitmq.env
printf 'postgresql://minqing:%s@postgres:5432/minqing' "$pg" > secrets/database-url
printf 'pyamqp://minqing:%s@rabbitmq:5672/minqing' "$mq" > secrets/amqp-uri
head -c 32 /dev/urandom | base64 | tr '+/' '-_' > secrets/vault-key
head -c 32 /dev/urandom | base64 > secrets/gateway-secret
# compose bind-mounts each file as it is: readable inside (the image runs as uid 10001), while the
# 0700 directory keeps other users of this host out
chmod 0644 secrets/postgres-password secrets/database-url secrets/amqp-uri secrets/vault-key secrets/gateway-secret
echo "secrets written to $(pwd)/secrets"
