#!/usr/bin/env bash
# Stop the single-node SLURM cluster that start-local.sh started: slurmd, slurmctld, and munged if
# start-local.sh started it. Jobs still running are killed with their daemons' job steps.
#
#   sudo cluster/slurm/stop-local.sh           # stop; the config, the packages and the logs stay
#   sudo cluster/slurm/stop-local.sh --purge   # also remove /etc/slurm/slurm.conf and SLURM's saved state
#
# It stops only daemons named in their pid files, and refuses when /etc/slurm/slurm.conf was not
# written by start-local.sh (a real cluster's config) unless --force.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARKER="# optbench: a single-node SLURM cluster on this machine"
PURGE=0
FORCE=0
die() { echo "stop-local.sh: error: $1" >&2; exit "${2:-1}"; }
say() { echo "stop-local.sh: $*" >&2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --purge) PURGE=1; shift ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (valid: --purge, --force, --help)" 2 ;;
  esac
done
[[ $(id -u) -eq 0 ]] || die "needs root: run it with sudo" 2
if [[ -f "$CONF" ]] && ! head -n 1 "$CONF" | grep -qF "$MARKER" && [[ $FORCE == 0 ]]; then
  die "$CONF was not written by start-local.sh; not stopping another cluster's daemons (--force to do it anyway)" 2
fi

stop_daemon() {  # stop_daemon PIDFILE NAME: SIGTERM, then SIGKILL after 10 s
  local pid
  [[ -s "$1" ]] || { say "$2 not running"; return 0; }
  pid=$(cat "$1")
  if ! [[ "$pid" =~ ^[0-9]+$ && -r /proc/$pid/comm && "$(cat "/proc/$pid/comm")" == "$2" ]]; then
    say "$2 not running (stale $1)"; rm -f "$1"; return 0
  fi
  kill "$pid"
  for _ in $(seq 100); do
    [[ -d /proc/$pid ]] || { say "stopped $2 (pid $pid)"; rm -f "$1"; return 0; }
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  say "killed $2 (pid $pid) after 10s"
  rm -f "$1"
}

stop_daemon /run/slurmd.pid slurmd
stop_daemon /run/slurmctld.pid slurmctld
if [[ -f /run/munge/.started-by-optbench ]]; then
  stop_daemon /run/munge/munged.pid munged
  rm -f /run/munge/.started-by-optbench
fi
if [[ $PURGE == 1 ]]; then
  rm -f "$CONF"
  rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/*
  say "removed $CONF and SLURM's saved state"
fi
