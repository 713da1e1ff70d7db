#!/usr/bin/env bash
# Developer tool: stop what dev/up.sh started and leave the machine clean
# (processes, pod network namespaces, the kl0 bridge, the state dir).
#   tests/cluster/dev/down.sh [DIR]   # default DIR=/tmp/kubeloop-dev; KEEP=1 keeps DIR
set -uo pipefail

DIR="${1:-/tmp/kubeloop-dev}"
log() { echo "down.sh: $*" >&2; }

alive() { local s; s="$(ps -o stat= -p "$1" 2>/dev/null)" && [[ -n "$s" && "$s" != Z* ]]; }
stop() { # name grace-seconds
  local f="$DIR/pids/$1.pid" pid
  [[ -f "$f" ]] || return 0
  pid="$(cat "$f")"
  if alive "$pid"; then
    kill -TERM "$pid"
    for _ in $(seq 1 $(($2 * 10))); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then log "$1 did not stop; SIGKILL"; kill -KILL "$pid"; fi
    log "stopped $1"
  fi
  rm -f "$f"
}
# The node first: it stops the pods' processes.
stop kubeloop-node 20
stop kube-scheduler 10
stop kube-controller-manager 10
stop kube-apiserver 10
stop etcd 10

for ns in $(ls /run/netns 2>/dev/null | grep '^kl-'); do
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  ip netns del "$ns" && log "removed leftover netns $ns"
done
for v in $(ls /sys/class/net | grep '^klv'); do ip link del "$v" 2>/dev/null; done
if [[ -d /sys/fs/cgroup/memory/kubeloop ]]; then
  find /sys/fs/cgroup/memory/kubeloop -depth -type d -exec rmdir {} \; 2>/dev/null
fi
[[ -d /sys/fs/cgroup/kubeloop ]] && find /sys/fs/cgroup/kubeloop -depth -type d -exec rmdir {} \; 2>/dev/null
ip link del kl0 2>/dev/null && log "removed bridge kl0"
# Empty mount points the pods' containers created on the host (standard ones only).
rmdir /run/secrets/kubernetes.io/serviceaccount /run/secrets/kubernetes.io /run/secrets 2>/dev/null
[[ -f /dev/termination-log && ! -s /dev/termination-log ]] && rm -f /dev/termination-log
if [[ -z "${KEEP:-}" && -d "$DIR" ]]; then
  # Unmount anything left under the state dir before removing it.
  grep -o " $DIR/[^ ]*" /proc/self/mountinfo | sort -r | while read -r mp; do umount -l "$mp"; done
  rm -rf "$DIR" && log "removed $DIR"
fi
