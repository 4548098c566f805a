#!/usr/bin/env bash
# A throwaway single-node Slurm cluster on localhost, for tests/slurm.rs.
#
#   tests/slurm/cluster.sh start [DIR]   start munged, slurmctld and slurmd with state under DIR
#   tests/slurm/cluster.sh stop [DIR]    stop them and remove DIR
#
# DIR defaults to $SWEEP_SLURM_DIR or /tmp/sweep-slurm. Commands that talk to the cluster need
# SLURM_CONF=DIR/slurm.conf; `start` prints that line. Everything (configuration, munge socket,
# spool, state, logs, pid files) lives under DIR, so the cluster touches no system-wide Slurm or
# munge set-up and `stop` leaves nothing running. Needs root and Debian's `slurm-wlm` and
# `munge` packages.
set -euo pipefail

action=${1:-}
dir=${2:-${SWEEP_SLURM_DIR:-/tmp/sweep-slurm}}
# Ports away from Slurm's defaults, so a real installation on the machine is not disturbed.
ctld_port=${SWEEP_SLURM_CTLD_PORT:-16817}
slurmd_port=${SWEEP_SLURM_SLURMD_PORT:-16818}

stop_pid_file() {
    local file=$1
    [ -s "$file" ] || return 0
    local pid
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || return 0
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
}

case "$action" in
start)
    for tool in munged slurmctld slurmd sbatch; do
        command -v "$tool" >/dev/null || {
            echo "cluster.sh: $tool not found; install with: apt-get install -y slurm-wlm munge" >&2
            exit 1
        }
    done
    mkdir -p "$dir"/{munge,spool,state,log}
    dir=$(cd "$dir" && pwd)
    # munged runs as the munge user and must reach its socket and log under DIR.
    chmod 755 "$dir"
    chown munge:munge "$dir/munge"
    chmod 755 "$dir/munge"
    # munged refuses a key it cannot trust; the package's key is owned by munge and mode 0400.
    key=/etc/munge/munge.key
    if [ ! -s "$key" ]; then
        key=$dir/munge/munge.key
        dd if=/dev/urandom of="$key" bs=1 count=1024 status=none
        chown munge:munge "$key"
        chmod 400 "$key"
    fi
    runuser -u munge -- munged \
        --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/munge/munged.pid" \
        --log-file="$dir/munge/munged.log" \
        --seed-file="$dir/munge/munged.seed" \
        --key-file="$key"
    cat >"$dir/slurm.conf" <<EOF
ClusterName=sweeptest
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$dir/slurm.conf
    slurmctld -i -f "$SLURM_CONF"
    slurmd -N localhost -f "$SLURM_CONF"
    # Ready when the node accepts work.
    for _ in $(seq 100); do
        state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
        case "$state" in
        idle*|mixed*|allocated*)
            echo "SLURM_CONF=$SLURM_CONF"
            exit 0
            ;;
        esac
        sleep 0.3
    done
    echo "cluster.sh: the node did not come up (state: ${state:-none}); logs in $dir/log" >&2
    tail -n 20 "$dir"/log/*.log >&2 || true
    exit 1
    ;;
stop)
    [ -d "$dir" ] || exit 0
    if [ -f "$dir/slurm.conf" ]; then
        SLURM_CONF=$dir/slurm.conf scancel --quiet --user=root 2>/dev/null || true
    fi
    stop_pid_file "$dir/slurmd.pid"
    stop_pid_file "$dir/slurmctld.pid"
    stop_pid_file "$dir/munge/munged.pid"
    rm -rf "$dir"
    ;;
*)
    echo "usage: $0 start|stop [DIR]" >&2
    exit 2
    ;;
esac
