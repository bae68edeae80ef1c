#!/usr/bin/env bash
# Starts the local PostgreSQL and Redis servers when they are installed but not running.
# Tests that need them skip (or, under CI, fail) with a clear reason when they are absent.
set -uo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5432 && command -v pg_ctlcluster >/dev/null 2>&1; then
  for version in $(ls /etc/postgresql 2>/dev/null); do
    echo "ensure-services: starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
fi
if ! port_open 6379 && command -v redis-server >/dev/null 2>&1; then
  echo "ensure-services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/academy.log || true
fi
for i in $(seq 1 20); do
  port_open 5432 && break
  sleep 0.5
done
exit 0
