#!/bin/sh
# Prints a fresh .env for compose.yaml, every secret random:
#
#   deploy/compose/new-env.sh > .env
#
# Run it once per stack. Later runs mint new secrets, and the old ones
# still matter: PostgreSQL keeps the password of its first start (in its
# volume), the webhook key seals the subscriptions' secrets in the database,
# and a new JWT secret signs everyone out.
set -eu

# $1 random bytes as lowercase hex: URL-safe (the password goes into
# STAMPEDE_DATABASE_URL), and the form the webhook key must have.
hex() {
  od -A n -t x1 -N "$1" /dev/urandom | tr -d ' \n'
}

cat <<ENV
# Made by deploy/compose/new-env.sh; secrets: never commit this file.
# HS256 key of the session tokens; 32 bytes or more.
STAMPEDE_JWT_SECRET=$(hex 32)
# 64 hex digits: seals the webhook subscriptions' signing secrets.
STAMPEDE_WEBHOOK_SECRET_KEY=$(hex 32)
# Signs the (simulated) payment provider's callbacks.
STAMPEDE_PAYMENT_WEBHOOK_SECRET=$(hex 32)
POSTGRES_PASSWORD=$(hex 16)
GRAFANA_ADMIN_PASSWORD=$(hex 16)
ENV
