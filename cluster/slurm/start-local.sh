#!/usr/bin/env bash
# A single-node SLURM cluster on this machine (controller + compute node = this host, on 127.0.0.1),
# to try `--launcher slurm` on a laptop or a CI container and to test it against a real SLURM.
#
#   sudo cluster/slurm/start-local.sh            # install (Debian/Ubuntu) if needed, configure, start, wait
#   sudo cluster/slurm/start-local.sh --cpus 8   # declare more CPUs than the machine has (more workers at once)
#   sudo cluster/slurm/stop-local.sh             # stop the daemons (the config and packages stay)
#
# Idempotent: run it again and it only starts what is not running (a changed configuration
# restarts the SLURM daemons). It needs root and no systemd: munged, slurmctld and slurmd are
# started directly. Exit code 0 only when `sinfo` shows the node idle; otherwise it prints the
# daemon logs and exits 1 (2 for bad arguments).
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"   # the daemons live in sbin, not always on a user's PATH

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TEMPLATE="$HERE/slurm.conf.in"
CONF=/etc/slurm/slurm.conf
MARKER="# optbench: a single-node SLURM cluster on this machine"
LOGDIR=/var/log/slurm
WAIT_S=60
CPUS=""
MEM_MB=""
INSTALL=auto
FORCE=0
# Short timeouts so that tests are fast (see slurm.conf.in).
CRED_EXPIRE=10 MIN_JOB_AGE=120 KILL_WAIT=5 GRACE_TIME=5

usage() {
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  cat <<EOF

Options:
  --cpus N        CPUs the node offers to jobs (default: this machine's, from slurmd -C)
  --mem-mb N      memory in MB the node offers (default: this machine's, from slurmd -C)
  --wait S        seconds to wait for the node to become idle (default $WAIT_S)
  --install       install slurm-wlm and munge with apt-get even if present (default: only when missing)
  --no-install    never run apt-get; fail if the binaries are missing
  --force         overwrite an $CONF that this script did not write
EOF
}

die() { echo "start-local.sh: error: $1" >&2; exit "${2:-1}"; }
say() { echo "start-local.sh: $*" >&2; }

positive_int() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '${2}'" 2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --cpus) [[ $# -ge 2 ]] || die "--cpus needs a value" 2; positive_int --cpus "$2"; CPUS=$2; shift 2 ;;
    --mem-mb) [[ $# -ge 2 ]] || die "--mem-mb needs a value" 2; positive_int --mem-mb "$2"; MEM_MB=$2; shift 2 ;;
    --wait) [[ $# -ge 2 ]] || die "--wait needs a value" 2; positive_int --wait "$2"; WAIT_S=$2; shift 2 ;;
    --install) INSTALL=yes; shift ;;
    --no-install) INSTALL=no; shift ;;
    --force) FORCE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1' (valid: --cpus, --mem-mb, --wait, --install, --no-install, --force, --help)" 2 ;;
  esac
done

[[ $(id -u) -eq 0 ]] || die "needs root (it installs packages, writes $CONF and starts daemons): run it with sudo" 2
[[ -f "$TEMPLATE" ]] || die "missing $TEMPLATE (run the script from an optbench checkout)" 2

# --- 1. packages --------------------------------------------------------------------------------
have_binaries() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
    && command -v munged >/dev/null
}
if [[ $INSTALL == yes ]] || { [[ $INSTALL == auto ]] && ! have_binaries; }; then
  command -v apt-get >/dev/null || die "slurm-wlm/munge missing and no apt-get: install SLURM and MUNGE by hand"
  say "installing slurm-wlm and munge (apt-get)"
  t0=$SECONDS
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d in containers refuses to start services at install time; this script starts them.
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
  say "installed in $((SECONDS - t0))s"
fi
have_binaries || die "slurmctld, slurmd, sbatch or munged not found (install slurm-wlm and munge, or drop --no-install)"

running() {  # running PIDFILE NAME: a live process of that name holds the pid file
  local pid
  [[ -s "$1" ]] || return 1
  pid=$(cat "$1")
  [[ "$pid" =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/comm ]] && [[ "$(cat "/proc/$pid/comm")" == "$2" ]]
}

# --- 2. MUNGE (authentication between the SLURM daemons and commands) --------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge
install -d -o munge -g munge -m 0755 /run/munge /var/log/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  say "creating /etc/munge/munge.key"
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! running /run/munge/munged.pid munged; then
  say "starting munged"
  runuser -u munge -- /usr/sbin/munged
  touch /run/munge/.started-by-optbench   # stop-local.sh stops only a munged that this script started
fi
for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"

# --- 3. slurm.conf for this host -----------------------------------------------------------------
NODE=$(hostname -s)
[[ -n "$NODE" ]] || die "this host has no name (hostname -s is empty)"
DETECTED=$(slurmd -C | head -n 1)   # NodeName=... CPUs=... Boards=... RealMemory=...
[[ "$DETECTED" == NodeName=* ]] || die "slurmd -C did not describe this machine: $DETECTED"
HW_CPUS=$(sed -n 's/.*\bCPUs=\([0-9]*\).*/\1/p' <<<"$DETECTED")
HW_MEM=$(sed -n 's/.*\bRealMemory=\([0-9]*\).*/\1/p' <<<"$DETECTED")
if [[ -n "$CPUS" ]]; then
  # A declared CPU count: no socket/core layout (it would contradict the count).
  NODE_HW="CPUs=$CPUS"
else
  CPUS=$HW_CPUS
  NODE_HW=$(sed -e 's/^NodeName=[^ ]* //' -e 's/ *RealMemory=[0-9]*//' <<<"$DETECTED")
fi
MEM_MB=${MEM_MB:-$HW_MEM}
[[ "$CPUS" =~ ^[1-9][0-9]*$ && "$MEM_MB" =~ ^[1-9][0-9]*$ ]] \
  || die "could not read CPUs/RealMemory from slurmd -C: $DETECTED"
# The daemons bind to the address this host's name resolves to: loopback only when it is a
# loopback address (Debian's /etc/hosts: 127.0.1.1 or 127.0.0.1); otherwise they listen on all
# interfaces (every message is still authenticated by MUNGE) and are reached on 127.0.0.1.
ADDR=$(getent ahostsv4 "$NODE" 2>/dev/null | awk 'NR == 1 { print $1 }' || true)
if [[ "$ADDR" == 127.* ]]; then
  COMM_LINE="CommunicationParameters=NoCtldInAddrAny,NoInAddrAny"
else
  say "note: $NODE resolves to '${ADDR:-nothing}', not a loopback address: the SLURM daemons listen on all interfaces (MUNGE-authenticated)"
  ADDR=127.0.0.1
  COMM_LINE="# ($NODE does not resolve to a loopback address: the daemons listen on all interfaces)"
fi
NODE_LINE="NodeName=$NODE NodeAddr=$ADDR NodeHostname=$NODE $NODE_HW RealMemory=$MEM_MB State=UNKNOWN"
DEF_MEM_PER_CPU=$((MEM_MB / CPUS))

NEW_CONF=$(sed -e "s|@NODE@|$NODE|g" -e "s|@NODE_LINE@|$NODE_LINE|" -e "s|@ADDR@|$ADDR|" -e "s|@COMM_LINE@|$COMM_LINE|" -e "s|@CRED_EXPIRE@|$CRED_EXPIRE|" \
  -e "s|@MIN_JOB_AGE@|$MIN_JOB_AGE|" -e "s|@KILL_WAIT@|$KILL_WAIT|" -e "s|@GRACE_TIME@|$GRACE_TIME|" \
  -e "s|@DEF_MEM_PER_CPU@|$DEF_MEM_PER_CPU|" "$TEMPLATE")
grep -q '@[A-Z_]*@' <<<"$NEW_CONF" && die "unfilled placeholder in $TEMPLATE: $(grep -o '@[A-Z_]*@' <<<"$NEW_CONF" | head -1)"

CHANGED=0
if [[ -f "$CONF" ]] && ! head -n 1 "$CONF" | grep -qF "$MARKER"; then
  [[ $FORCE == 1 ]] || die "$CONF exists and was not written by this script; move it away or pass --force" 2
  cp -p "$CONF" "$CONF.before-optbench"
  say "kept the previous config as $CONF.before-optbench"
fi
if [[ ! -f "$CONF" ]] || [[ "$(cat "$CONF")" != "$NEW_CONF" ]]; then
  install -d -m 0755 /etc/slurm
  printf '%s\n' "$NEW_CONF" >"$CONF.tmp"
  chmod 0644 "$CONF.tmp"
  mv "$CONF.tmp" "$CONF"
  CHANGED=1
  say "wrote $CONF ($NODE: $CPUS CPUs, $MEM_MB MB)"
fi

# --- 4. SLURM daemons ----------------------------------------------------------------------------
install -d -o slurm -g slurm -m 0755 /var/lib/slurm /var/lib/slurm/slurmctld "$LOGDIR"
install -d -m 0755 /var/lib/slurm/slurmd
stop_daemon() {  # stop_daemon PIDFILE NAME
  local pid
  running "$1" "$2" || return 0
  pid=$(cat "$1")
  kill "$pid"
  for _ in $(seq 100); do [[ -d /proc/$pid ]] || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
if [[ $CHANGED == 1 ]]; then
  stop_daemon /run/slurmd.pid slurmd
  stop_daemon /run/slurmctld.pid slurmctld
fi
if ! running /run/slurmctld.pid slurmctld; then
  say "starting slurmctld"
  # -c: start from an empty job list (a stale state from another config is never resumed).
  /usr/sbin/slurmctld -c
fi
if ! running /run/slurmd.pid slurmd; then
  say "starting slurmd"
  /usr/sbin/slurmd
fi

show_logs() {
  for f in "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log" /var/log/munge/munged.log; do
    [[ -f $f ]] && { echo "--- tail $f" >&2; tail -n 25 "$f" >&2; }
  done
  return 0
}

# --- 5. wait for the node --------------------------------------------------------------------------
deadline=$((SECONDS + WAIT_S))
state=""
while :; do
  state=$(sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -n 1 || true)
  case "$state" in
    idle|mixed|allocated|completing) break ;;
    drained*|down*|fail*|inval*)
      # A node that was down while the daemons restarted: tell slurmctld it is back.
      scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  if (( SECONDS >= deadline )); then
    show_logs
    die "node $NODE not idle after ${WAIT_S}s (sinfo says '${state:-nothing}'); daemon logs above"
  fi
  sleep 0.5
done

VERSION=$(sinfo --version 2>/dev/null || echo slurm)
cat >&2 <<EOF
start-local.sh: $VERSION running: node $NODE ($CPUS CPUs, $MEM_MB MB) is $state; partitions debug (default) and urgent (preempts debug)
  try:    sbatch --wrap hostname; squeue; sinfo
  logs:   $LOGDIR/slurmctld.log, $LOGDIR/slurmd.log
  stop:   $HERE/stop-local.sh
EOF
