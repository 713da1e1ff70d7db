#!/usr/bin/env bash
# Developer tool: start a throw-away single-node cluster by hand, to try
# kubeloop-node without the Python launcher (operator/kubeloop/devenv/cluster.py
# is the real one; this script only mirrors its contract).
#
#   tests/cluster/dev/up.sh [DIR]     # default DIR=/tmp/kubeloop-dev
#   export KUBECONFIG=DIR/admin.kubeconfig
#   tests/cluster/dev/down.sh [DIR]   # stops everything, removes bridge/netns/DIR
#
# It builds what is missing (build.sh), generates a PKI with openssl, creates
# the bridge kl0 (10.88.0.1/16), then runs etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kubeloop-node in the
# background (logs in DIR/logs, pids in DIR/pids). Needs root.
set -euo pipefail

DIR="${1:-/tmp/kubeloop-dev}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BRIDGE=kl0
BRIDGE_IP=10.88.0.1
POD_CIDR=10.88.0.0/16
SVC_CIDR=10.96.0.0/16
NODE=kubeloop-node

log() { echo "up.sh: $*" >&2; }

# Alive and not a zombie (an exited child of a non-reaping init still answers kill -0).
alive() { local s; s="$(ps -o stat= -p "$1" 2>/dev/null)" && [[ -n "$s" && "$s" != Z* ]]; }
running() { [[ -f "$DIR/pids/$1.pid" ]] && alive "$(cat "$DIR/pids/$1.pid")"; }
# Re-running up.sh restarts what stopped (e.g. a rebuilt node); a cluster not
# started from DIR must not be running.
port_busy() { ss -ltn 2>/dev/null | grep -qE ":$1 "; }
if { ! running kube-apiserver && port_busy 6443; } || { ! running kubeloop-node && port_busy 10250; }; then
  log "port 6443 or 10250 is in use by something up.sh did not start (another cluster? down.sh it first)"
  exit 1
fi

bin="$(bash "$here/build.sh" | tail -n1)"
node_bin="$(bash "$here/build.sh" --print-node-path | tail -n1)"
mkdir -p "$DIR"/{pki,logs,pids,etcd,node}
DIR="$(cd "$DIR" && pwd)"
pki="$DIR/pki"

# --- PKI ---
cd "$pki"
if [[ ! -f ca.crt ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -keyout ca.key -out ca.crt -subj "/CN=kubeloop-dev-ca" 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  # name subject [extfile-lines...]
  cert() {
    local name="$1" subj="$2" ext="$3"
    openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj" 2>/dev/null
    printf '%b\n' "$ext" > "$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -out "$name.crt" -extfile "$name.ext" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
  }
  cert apiserver "/CN=kube-apiserver" \
    "subjectAltName=IP:$BRIDGE_IP,IP:10.96.0.1,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth"
  cert admin "/O=system:masters/CN=kubernetes-admin" "extendedKeyUsage=clientAuth"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
  cert node "/O=system:nodes/CN=system:node:$NODE" "extendedKeyUsage=clientAuth"
  cert node-serving "/CN=$NODE" "subjectAltName=IP:$BRIDGE_IP,DNS:$NODE\nextendedKeyUsage=serverAuth"
fi
kubeconfig() { # file user cert key
  cat > "$DIR/$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: dev
  cluster: {server: "https://$BRIDGE_IP:6443", certificate-authority: "$pki/ca.crt"}
users:
- name: $2
  user: {client-certificate: "$pki/$3.crt", client-key: "$pki/$3.key"}
contexts:
- name: dev
  context: {cluster: dev, user: $2}
current-context: dev
KC
}
kubeconfig admin.kubeconfig admin admin
kubeconfig node.kubeconfig "system:node:$NODE" node

# --- bridge ---
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  ip link add "$BRIDGE" type bridge
fi
ip addr replace "$BRIDGE_IP/16" dev "$BRIDGE"
ip link set "$BRIDGE" up

start() { # name args...
  local name="$1"; shift
  if running "$name"; then
    log "$name already running"; return
  fi
  nohup "$@" >"$DIR/logs/$name.log" 2>&1 &
  echo $! > "$DIR/pids/$name.pid"
  log "started $name (pid $!)"
}
wait_for() { # what command...
  local what="$1"; shift
  for _ in $(seq 1 120); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  log "timed out waiting for $what"; exit 1
}

start etcd "$bin/etcd" --name dev --data-dir "$DIR/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster dev=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381
wait_for etcd curl -sf http://127.0.0.1:2379/health

start kube-apiserver "$bin/kube-apiserver" \
  --etcd-servers=http://127.0.0.1:2379 \
  --bind-address=$BRIDGE_IP --advertise-address=$BRIDGE_IP --secure-port=6443 \
  --service-cluster-ip-range=$SVC_CIDR \
  --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NamespaceLifecycle,ServiceAccount,PodSecurity,ResourceQuota,LimitRanger,NodeRestriction \
  --service-account-issuer=https://kubernetes.default.svc \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --client-ca-file="$pki/ca.crt" --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
  --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$pki/ca.crt" --kubelet-preferred-address-types=InternalIP \
  --allow-privileged=true --profiling=false
wait_for kube-apiserver "$bin/kubectl" --kubeconfig "$DIR/admin.kubeconfig" get --raw /readyz

start kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig="$DIR/admin.kubeconfig" --authentication-kubeconfig="$DIR/admin.kubeconfig" \
  --authorization-kubeconfig="$DIR/admin.kubeconfig" \
  --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
  --use-service-account-credentials=true --leader-elect=false --controllers='*' \
  --service-cluster-ip-range=$SVC_CIDR --bind-address=127.0.0.1
start kube-scheduler "$bin/kube-scheduler" \
  --kubeconfig="$DIR/admin.kubeconfig" --authentication-kubeconfig="$DIR/admin.kubeconfig" \
  --authorization-kubeconfig="$DIR/admin.kubeconfig" --leader-elect=false --bind-address=127.0.0.1

start kubeloop-node "$node_bin" \
  --node-name=$NODE --kubeconfig="$DIR/node.kubeconfig" --state-dir="$DIR/node" \
  --bridge=$BRIDGE --bridge-ip=$BRIDGE_IP --pod-cidr=$POD_CIDR \
  --api-host=$BRIDGE_IP --api-port=6443 --port=10250 \
  --tls-cert-file="$pki/node-serving.crt" --tls-private-key-file="$pki/node-serving.key" \
  --client-ca-file="$pki/ca.crt"
wait_for "node Ready" sh -c "'$bin/kubectl' --kubeconfig '$DIR/admin.kubeconfig' get node $NODE -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -q True"

log "cluster up in $DIR"
echo "export KUBECONFIG=$DIR/admin.kubeconfig PATH=$bin:\$PATH"
