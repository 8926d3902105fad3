#!/usr/bin/env bash
# A real single-node SLURM (munge + slurmctld + slurmd) on this machine, for testing the
# workflow's SLURM profile: `.ci/slurm.sh start|stop|status`. Needs root and Debian's
# slurm-wlm. No systemd, no cgroups (proctrack/linuxproc); memory limits are enforced by
# jobacct_gather's OverMemoryKill, so a job that outgrows its request is killed like on a cluster.
# No accounting database: run Snakemake with --slurm-status-command squeue (with sacct present
# but accounting off, the plugin would wait forever). `stop` kills only the daemons it started,
# by their pid files.
set -euo pipefail

ACTION=${1:-start}
PREFIX=${PREFIX:-/tmp/overtrain-slurm}
PARTITION=${PARTITION:-debug}
NODE=$(hostname -s)
ETC=$PREFIX/etc LOG=$PREFIX/log RUN=$PREFIX/run MUNGE=$PREFIX/munge
SOCK=$MUNGE/munge.socket.2
export SLURM_CONF=$ETC/slurm.conf

die() { echo "slurm.sh: $*" >&2; exit 1; }
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local t=$1 what=$2; shift 2
  for ((i = 0; i < t * 4; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  die "timed out after ${t}s waiting for $what (logs in $LOG)"
}
stop_pid() {
  local name=$1 pidfile=$2 pid
  if alive "$pidfile"; then
    pid=$(cat "$pidfile"); kill "$pid"
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
}

case $ACTION in
  stop)
    stop_pid slurmd "$RUN/slurmd.pid"
    stop_pid slurmctld "$RUN/slurmctld.pid"
    stop_pid munged "$MUNGE/munged.pid"
    if [[ -L /etc/slurm/slurm.conf && $(readlink /etc/slurm/slurm.conf) == "$ETC/slurm.conf" ]]; then
      rm -f /etc/slurm/slurm.conf
    fi
    exit 0 ;;
  status)
    for p in "$MUNGE/munged.pid" "$RUN/slurmctld.pid" "$RUN/slurmd.pid"; do
      alive "$p" && echo "up   $(basename "$p" .pid) $(cat "$p")" || echo "down $(basename "$p" .pid)"
    done
    exit 0 ;;
  start) ;;
  *) die "usage: $0 start|stop|status" ;;
esac

[[ $(id -u) == 0 ]] || die "must run as root"
missing=()
for p in slurmctld slurmd slurm-client munge; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
mkdir -p "$ETC" "$LOG" "$RUN" "$PREFIX/state" "$PREFIX/spool"
install -d -m 0711 "$MUNGE"

if [[ ! -s $MUNGE/munge.key ]]; then
  dd if=/dev/urandom of="$MUNGE/munge.key" bs=1024 count=1 status=none
  chmod 0400 "$MUNGE/munge.key"
fi
alive "$MUNGE/munged.pid" || munged --key-file="$MUNGE/munge.key" --socket="$SOCK" \
  --pid-file="$MUNGE/munged.pid" --log-file="$LOG/munged.log" --seed-file="$MUNGE/munged.seed"
wait_for 10 munged bash -c "munge -S '$SOCK' -n | unmunge -S '$SOCK'"

GEOM=$(slurmd -C | head -1 | grep -o 'CPUs=.*ThreadsPerCore=[0-9]*')
MEM=$(slurmd -C | head -1 | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
cat > "$ETC/slurm.conf" <<CONF
ClusterName=overtrain-ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
SlurmctldPort=${CTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
StateSaveLocation=$PREFIX/state
SlurmdSpoolDir=$PREFIX/spool/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MinJobAge=600
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
JobAcctGatherParams=OverMemoryKill
NodeName=$NODE NodeAddr=127.0.0.1 $GEOM RealMemory=$((MEM * 8 / 10)) State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
# the plugin's job step strips SLURM_CONF before its inner srun: the config must be at the
# default path too
mkdir -p /etc/slurm
[[ -e /etc/slurm/slurm.conf && ! -L /etc/slurm/slurm.conf ]] && die "/etc/slurm/slurm.conf exists; not replacing it"
ln -sfn "$ETC/slurm.conf" /etc/slurm/slurm.conf

alive "$RUN/slurmctld.pid" && stop_pid slurmctld "$RUN/slurmctld.pid"
alive "$RUN/slurmd.pid" && stop_pid slurmd "$RUN/slurmd.pid"
slurmctld
wait_for 30 slurmctld scontrol ping
slurmd
wait_for 30 "node $NODE" bash -c "sinfo -h -n $NODE -o %T | grep -Eq '^(idle|mix|alloc)'"
out=$(timeout 60 srun -N1 -n1 -t 1 hostname)
[[ $out == "$NODE"* ]] || die "srun smoke test failed: $out"
echo "SLURM up: $(sinfo -h -N -o '%N %P %T cpus=%c mem=%m')"
