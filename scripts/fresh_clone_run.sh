#!/usr/bin/env bash
# Time a first `make run` the way a new user meets it: a fresh clone, an empty pip cache,
# until the stack prints "==> http://...", then Ctrl-C (SIGINT). Prints the install time,
# the time until ready, the load, the packages and the size of .venv (docs/benchmarks.md,
# "Install"). Usage: scripts/fresh_clone_run.sh [repo-or-url] [workdir]
set -u
repo=${1:-$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)}
work=${2:-$(mktemp -d /tmp/fresh-run.XXXXXX)}
clone=$work/clone; log=$work/make.log
git clone -q "$repo" "$clone" || exit 1
cd "$clone" || exit 1
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
rx0=$(awk '$1 ~ /^(eth|en)/ {s += $2} END {print s + 0}' /proc/net/dev)
export PIP_CACHE_DIR=$work/pip-cache PYTHONUNBUFFERED=1
# Ports of their own, so a `make run` already going elsewhere does not collide.
export CTROPS_GATEWAY_PORT=${CTROPS_GATEWAY_PORT:-18000} CTROPS_BROKER_PORT=${CTROPS_BROKER_PORT:-19092}
export CTROPS_SERVICE_PORT_BASE=${CTROPS_SERVICE_PORT_BASE:-18101} CTROPS_DATA_DIR=$work/data
export CTROPS_SCORER_API_PORT=${CTROPS_SCORER_API_PORT:-18090}
t0=$(date +%s.%N); installed=""; ready=""
setsid make run > "$log" 2>&1 &
make_pid=$!
while kill -0 "$make_pid" 2>/dev/null; do
  now=$(date +%s.%N)
  if [ -z "$installed" ] && grep -q "ctrops_common.stack" "$log"; then
    installed=$now; echo "installed after $(echo "$now - $t0" | bc) s (load $(cut -d' ' -f1-3 /proc/loadavg))"
  fi
  if grep -q "==> http" "$log"; then ready=$now; break; fi
  sleep 1
done
if [ -z "$ready" ]; then echo "make run ended before it was ready; see $log"; exit 1; fi
echo "ready after $(echo "$ready - $t0" | bc) s (load $(cut -d' ' -f1-3 /proc/loadavg))"
kill -INT -- -"$make_pid"
wait "$make_pid"; echo "make run exited $? after SIGINT"
rx1=$(awk '$1 ~ /^(eth|en)/ {s += $2} END {print s + 0}' /proc/net/dev)
echo "network received (whole machine): $(( (rx1 - rx0) / 1000000 )) MB"
echo "packages: $(.venv/bin/python -m pip list 2>/dev/null | tail -n +3 | wc -l), .venv: $(du -sm .venv | cut -f1) MB"
echo "log: $log"
