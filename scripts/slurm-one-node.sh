#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for trying `loopscale run --executor slurm` and for
# the integration test (tests/slurm.rs). Debian's slurm-wlm and munge, started as root without
# systemd; this host is both controller and compute node, with all its cores.
#
#   scripts/slurm-one-node.sh start    install (apt) if missing, configure, start, wait until idle
#   scripts/slurm-one-node.sh stop     stop the daemons this script started (by their pid files)
#   scripts/slurm-one-node.sh status   daemons and `sinfo`
#
# Idempotent: `start` on a running cluster only checks it. Exit status 0 means the node is idle
# and accepts jobs; anything else prints why on stderr (tests skip on that message).
# Accounting is off (no slurmdbd): `sacct` does not work here, job state comes from `squeue`.
set -euo pipefail

# Debian installs the daemons in /usr/sbin, which a non-login root shell may not have on PATH.
export PATH=$PATH:/usr/sbin:/sbin
CONF_DIR=${SLURM_CONF_DIR:-/etc/slurm}
CONF=$CONF_DIR/slurm.conf
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid
WAIT_S=${SLURM_WAIT_S:-60}

say() { echo "slurm-one-node: $*"; }
die() { echo "slurm-one-node: $*" >&2; exit 1; }

alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
     && command -v sbatch >/dev/null; then
    return
  fi
  [[ $(id -u) -eq 0 ]] || die "slurm-wlm/munge are not installed and installing them needs root (apt-get); run as root or install them"
  command -v apt-get >/dev/null || die "slurm-wlm/munge are not installed and there is no apt-get to install them"
  say "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed (no network to the Debian mirror?)"
  apt-get install -y -qq slurm-wlm munge >/dev/null || die "apt-get install slurm-wlm munge failed"
  for c in slurmctld slurmd munged sbatch; do
    command -v $c >/dev/null || die "$c is still missing after installing slurm-wlm and munge (PATH=$PATH)"
  done
}

write_conf() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  # RealMemory in MB, a little under what the machine has, so the node is never 'invalid'.
  mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  local tmp
  tmp=$(mktemp)
  cat >"$tmp" <<EOF
# Written by loopscale's scripts/slurm-one-node.sh: one node ($host, $cpus CPUs), no accounting.
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
# Let a requeued or cancelled array start again quickly in tests.
MinJobAge=30
# Small on purpose (Slurm's default is 1001): array indices stay below it, so a sweep of more
# than 5 runs is split into several arrays, and tests/slurm.rs exercises that path for real.
MaxArraySize=5
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  chmod 0644 "$tmp"  # users run sinfo/sbatch too
  if ! cmp -s "$tmp" "$CONF"; then
    mv "$tmp" "$CONF"
    CONF_CHANGED=1
    say "wrote $CONF ($host, $cpus CPUs, ${mem} MB)"
  else
    rm -f "$tmp"
  fi
}

start_munge() {
  if alive "$MUNGE_PID"; then return; fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
  [[ -f /etc/munge/munge.key ]] || {
    say "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null; then mungekey --create --keyfile /etc/munge/munge.key
    else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
  }
  chown -R munge:munge /var/log/munge /var/lib/munge /run/munge /etc/munge
  chmod 0400 /etc/munge/munge.key
  say "starting munged"
  su -s /bin/sh munge -c munged || die "munged did not start (see /var/log/munge/munged.log)"
}

wait_idle() {
  local waited=0 state=""
  while (( waited < WAIT_S )); do
    state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n1 || true)
    case $state in
      idle|mixed|allocated) say "node $(hostname -s) is $state after ${waited}s"; return 0 ;;
    esac
    sleep 1
    waited=$((waited + 1))
  done
  die "the node is not idle after ${WAIT_S}s (state '${state:-none}'); see /var/log/slurm/slurmctld.log and slurmd.log"
}

start() {
  # Already up (started by root earlier, or a real cluster): nothing to do, root or not.
  if [[ $(id -u) -ne 0 ]] && command -v sinfo >/dev/null \
     && [[ $(sinfo -h -N -o '%T' 2>/dev/null | head -n1) =~ ^(idle|mixed|allocated)$ ]]; then
    say "a cluster is already up: $(sinfo -h -N -o '%N %T' | head -n1)"
    return
  fi
  install
  [[ $(id -u) -eq 0 ]] || die "starting slurmctld/slurmd/munged needs root"
  CONF_CHANGED=0
  write_conf
  start_munge
  if (( CONF_CHANGED )) && { alive "$CTLD_PID" || alive "$SLURMD_PID"; }; then
    say "configuration changed: restarting the daemons"
    stop_daemons
  fi
  if ! alive "$CTLD_PID"; then
    say "starting slurmctld"
    slurmctld || die "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
  fi
  if ! alive "$SLURMD_PID"; then
    say "starting slurmd"
    slurmd || die "slurmd did not start (see /var/log/slurm/slurmd.log)"
  fi
  wait_idle
  # A node left 'down' or 'drain' by an earlier unclean stop would never run anything.
  scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
}

stop_pid() {
  local name=$1 file=$2
  if alive "$file"; then
    local pid
    pid=$(cat "$file")
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    say "stopped $name (pid $pid)"
  fi
  rm -f "$file"
}

stop_daemons() {
  stop_pid slurmd "$SLURMD_PID"
  stop_pid slurmctld "$CTLD_PID"
}

stop() {
  stop_daemons
  stop_pid munged "$MUNGE_PID"
}

status() {
  for d in munged:$MUNGE_PID slurmctld:$CTLD_PID slurmd:$SLURMD_PID; do
    if alive "${d#*:}"; then say "${d%%:*} running (pid $(cat "${d#*:}"))"; else say "${d%%:*} not running"; fi
  done
  alive "$CTLD_PID" && sinfo
  alive "$CTLD_PID"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
