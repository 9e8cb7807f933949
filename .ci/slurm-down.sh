#!/usr/bin/env bash
# Stop the one-node SLURM started by .ci/slurm-up.sh, by the pids in its pid
# files only (other SLURM or munge daemons on the machine are left alone).
# munged is stopped too when slurm-up.sh started it (it leaves munged.ours),
# unless QSOPIPE_KEEP_MUNGE=1. Safe to run when nothing is up.
set -uo pipefail

SCRATCH=${QSOPIPE_SLURM_DIR:-/tmp/qsopipe-slurm}

stop_pidfile() {
    local file=$1 pid i
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for i in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$file"
}

stop_pidfile "$SCRATCH/slurmd.pid"
stop_pidfile "$SCRATCH/slurmctld.pid"
if [ "${QSOPIPE_KEEP_MUNGE:-0}" != 1 ] && [ -f "$SCRATCH/munged.ours" ]; then
    stop_pidfile /run/munge/munged.pid
    rm -f "$SCRATCH/munged.ours"
fi
echo "slurm-down: stopped" >&2
