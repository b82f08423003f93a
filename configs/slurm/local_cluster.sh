#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, to try the recipes of configs/slurm/ before a real
# cluster (and for tests/test_slurm.py): munged, slurmctld and slurmd on localhost, with the
# machine's cores (nproc) and memory, everything in one state folder this script owns.
#
#   configs/slurm/local_cluster.sh up        # install slurm-wlm and munge if missing (root), start
#   eval "$(configs/slurm/local_cluster.sh env)"   # SLURM_CONF for sbatch, srun, squeue, sinfo
#   sbatch --ntasks-per-node=2 --cpus-per-task=1 --gres=none ... configs/slurm/train.sbatch
#   configs/slurm/local_cluster.sh status    # exit 0 when the node is up and answering
#   configs/slurm/local_cluster.sh down      # cancel its jobs, stop the daemons it started
#
# `up` and `down` are idempotent: `up` starts only what is not running, `down` stops only the
# processes named by the pid files in the state folder (never another munged or slurmd).
# Environment: WRCOR_SLURM_DIR (state folder, default ${TMPDIR:-/tmp}/wrcor-slurm),
# WRCOR_SLURM_PORT (slurmctld's port, default 6817; slurmd listens on the next one).
set -euo pipefail

STATE=${WRCOR_SLURM_DIR:-${TMPDIR:-/tmp}/wrcor-slurm}
CTLD_PORT=${WRCOR_SLURM_PORT:-6817}
SLURMD_PORT=$((CTLD_PORT + 1))
CONF=$STATE/slurm.conf
MUNGE=$STATE/munge
SOCKET=$MUNGE/munge.socket
NODE=$(hostname -s)
export SLURM_CONF=$CONF

say() { echo "local_cluster: $*"; }
die() { echo "local_cluster: error: $*" >&2; exit 1; }

# pid of the daemon `name` recorded in `pidfile`, if that process is alive and is that daemon
# (a stale file whose pid now belongs to another program does not count).
running() {
    local name=$1 pidfile=$2 pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$name" ]] || return 1
    echo "$pid"
}

install_packages() {
    local missing=()
    for cmd in munged slurmctld slurmd sbatch srun sinfo scontrol; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
    done
    ((${#missing[@]} == 0)) && return 0
    if [[ $(id -u) != 0 ]]; then
        die "${missing[*]} not found; install them as root: apt-get install -y slurm-wlm munge"
    fi
    say "installing slurm-wlm and munge (missing: ${missing[*]})"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_conf() {
    local cpus mem_mb
    # the machine's processing units (nproc alone would follow OMP_NUM_THREADS)
    cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
    # 90% of the memory: slurmd drains a node that reports less than it is configured with
    mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 * 0.9 / 1024}' /proc/meminfo)
    mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/log"
    cat >"$CONF" <<EOF
# Written by configs/slurm/local_cluster.sh: a one-node cluster on $NODE.
ClusterName=wrcor-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
# cred_expire is also how long a requeued job waits before it may start again (default 120 s)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET,cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool/slurmd-%n
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups needed: processes are tracked by parentage, tasks are not bound
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=10
MinJobAge=600
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munged() {
    if running munged "$MUNGE/munged.pid" >/dev/null; then return 0; fi
    mkdir -p "$MUNGE"
    chmod 0755 "$MUNGE"  # munged wants its socket reachable by every user
    if [[ ! -s $MUNGE/munge.key ]]; then
        dd if=/dev/urandom of="$MUNGE/munge.key" bs=1024 count=1 status=none
        chmod 0400 "$MUNGE/munge.key"
    fi
    munged --key-file="$MUNGE/munge.key" --socket="$SOCKET" --pid-file="$MUNGE/munged.pid" \
        --log-file="$MUNGE/munged.log" --seed-file="$MUNGE/munged.seed" \
        || die "munged did not start; see $MUNGE/munged.log"
    say "munged started (pid $(<"$MUNGE/munged.pid"))"
}

start_daemon() {
    local name=$1
    if running "$name" "$STATE/$name.pid" >/dev/null; then return 0; fi
    rm -f "$STATE/$name.pid"
    "$name" -f "$CONF" || die "$name did not start; see $STATE/log/$name.log"
    local i
    for ((i = 0; i < 50; i++)); do
        running "$name" "$STATE/$name.pid" >/dev/null && break
        sleep 0.2
    done
    running "$name" "$STATE/$name.pid" >/dev/null || die "$name exited; see $STATE/log/$name.log"
    say "$name started (pid $(<"$STATE/$name.pid"))"
}

node_state() { sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n 1; }

wait_idle() {
    local i state=
    for ((i = 0; i < 120; i++)); do
        state=$(node_state || true)
        case $state in
            idle | mixed | allocated | completing) say "node $NODE is $state"; return 0 ;;
            down* | drain* | drained*) scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
        esac
        sleep 0.5
    done
    die "node $NODE is '${state:-not answering}' after 60 s; see $STATE/log/"
}

up() {
    install_packages
    mkdir -p "$STATE"
    chmod 0755 "$STATE"
    if ! running slurmctld "$STATE/slurmctld.pid" >/dev/null || ! running slurmd "$STATE/slurmd.pid" >/dev/null; then
        write_conf
    fi
    start_munged
    start_daemon slurmctld
    start_daemon slurmd
    wait_idle
    say "export SLURM_CONF=$CONF"
}

stop() {
    local name=$1 pidfile=$2 pid i
    pid=$(running "$name" "$pidfile") || { rm -f "$pidfile"; return 0; }
    kill "$pid"
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    rm -f "$pidfile"
    say "$name stopped (pid $pid)"
}

down() {
    if running slurmctld "$STATE/slurmctld.pid" >/dev/null && [[ -n $(squeue -h -o %i 2>/dev/null) ]]; then
        # jobs of this cluster only: their processes would outlive slurmd otherwise
        scancel --full $(squeue -h -o %i) 2>/dev/null || true
        local i
        for ((i = 0; i < 60; i++)); do
            [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
    stop slurmd "$STATE/slurmd.pid"
    stop slurmctld "$STATE/slurmctld.pid"
    stop munged "$MUNGE/munged.pid"
}

status() {
    local name pidfile pid ok=0
    for name in munged slurmctld slurmd; do
        pidfile=$STATE/$name.pid
        [[ $name == munged ]] && pidfile=$MUNGE/munged.pid
        if pid=$(running "$name" "$pidfile"); then
            say "$name running (pid $pid)"
        else
            say "$name not running"
            ok=1
        fi
    done
    if ((ok == 0)); then
        local state
        state=$(node_state || true)
        say "node $NODE: ${state:-not answering}"
        case $state in idle | mixed | allocated | completing) ;; *) ok=1 ;; esac
    fi
    return $ok
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 up|down|status|env (state folder: $STATE)" >&2; exit 2 ;;
esac
