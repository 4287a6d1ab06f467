#!/usr/bin/env bash
# Make sure a Redis server answers on 127.0.0.1:${REDIS_TEST_PORT:-6379}; install and start one if not.
set -euo pipefail
port="${REDIS_TEST_PORT:-6379}"
ping() { (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
ping && exit 0
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server not found: installing it" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
mkdir -p /tmp/proxy-core-redis
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
  --dir /tmp/proxy-core-redis --logfile /tmp/proxy-core-redis/redis.log
for _ in $(seq 1 50); do ping && exit 0; sleep 0.1; done
echo "Redis did not start on 127.0.0.1:$port" >&2
exit 1
