#!/usr/bin/env bash
# Stop the one-node SLURM started by .ci/slurm-up.sh: only the daemons of its
# scratch dir (other SLURM or munge daemons on the machine are left alone).
# munged is stopped too when slurm-up.sh started it (it leaves munged.ours),
# unless CI_KEEP_MUNGE=1. Safe to run when nothing is up.
set -uo pipefail

SCRATCH=${CI_SLURM_DIR:-/tmp/qsopipe-slurm}

stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid"
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid"
}

# The pid file, and, since a daemon that is still starting has not written
# it yet, any process whose command line is exactly DAEMON -f <our conf>.
stop_daemon() {
    local daemon=$1 pid
    for pid in $(cat "$SCRATCH/$daemon.pid" 2>/dev/null) $(pgrep -xf "$daemon -f $SCRATCH/slurm.conf"); do
        stop_pid "$pid"
    done
    rm -f "$SCRATCH/$daemon.pid"
}

stop_daemon slurmd
stop_daemon slurmctld
if [ "${CI_KEEP_MUNGE:-0}" != 1 ] && [ -f "$SCRATCH/munged.ours" ]; then
    stop_pid "$(cat /run/munge/munged.pid)"
    rm -f "$SCRATCH/munged.ours"
fi
echo "slurm-down: stopped" >&2
