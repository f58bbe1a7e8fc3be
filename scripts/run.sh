#!/usr/bin/env bash
# What `make run` does once the release binary is built: starts `paddock
# server` in the background — the Kubernetes API with its SQLite store, the
# controllers, and this node's agent (Paddock's embedded runtime) and proxy
# —, waits until the node is Ready, and prints what to type next. Run as root.
#
#   scripts/run.sh BINARY [paddock server flags...]    start (or find running)
#   scripts/run.sh --stop                              stop it (`make stop`); its pods keep running
#
# DATA_DIR (/var/lib/paddock) holds the state, the log (server.log) and the
# pid file; KUBECONFIG_OUT (/etc/paddock/kubeconfig.yaml) is the admin
# kubeconfig it writes.
set -euo pipefail
DATA_DIR=${DATA_DIR:-/var/lib/paddock}
KUBECONFIG_OUT=${KUBECONFIG_OUT:-/etc/paddock/kubeconfig.yaml}
TIMEOUT=${TIMEOUT:-300}
pidfile=$DATA_DIR/server.pid
log=$DATA_DIR/server.log

[ "$(id -u)" = 0 ] || { echo "run it as root: Paddock sets up networks, cgroups and mounts" >&2; exit 1; }

running() { # the server's pid, if the pid file names a live paddock server
  local pid
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q ' server ' && echo "$pid"
}

if [ "${1:-}" = --stop ]; then
  if pid=$(running); then
    # Pods outlive the server, as with k3s: the next start picks them up again.
    pods=$(KUBECONFIG=$KUBECONFIG_OUT kubectl get pods -A --field-selector=status.phase=Running \
      --no-headers --request-timeout=5s 2>/dev/null | wc -l) || pods=0
    kill -TERM "$pid"
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    echo "stopped paddock server (pid $pid)"
    if [ "$pods" -gt 0 ]; then
      echo "$pods pods keep running: the next \`make run\` picks them up; to stop them, delete them with kubectl before \`make stop\`"
    fi
  else
    echo "paddock server is not running"
  fi
  rm -f "$pidfile"
  exit 0
fi

binary=${1:?usage: scripts/run.sh BINARY [paddock server flags...] | --stop}
shift
if pid=$(running); then
  echo "paddock server is running already (pid $pid); \`make stop\` stops it"
else
  mkdir -p "$DATA_DIR" "$(dirname "$KUBECONFIG_OUT")"
  setsid "$binary" server --data-dir "$DATA_DIR" --write-kubeconfig "$KUBECONFIG_OUT" "$@" \
    </dev/null >>"$log" 2>&1 &
  pid=$!
  echo "$pid" >"$pidfile"
  echo "started paddock server (pid $pid, log $log)"
fi

export KUBECONFIG=$KUBECONFIG_OUT
deadline=$((SECONDS + TIMEOUT))
echo -n "waiting for this node to be Ready"
until nodes=$(kubectl get nodes --request-timeout=5s \
    -o jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null) &&
  [ -n "$nodes" ] && ! grep -qv ' True$' <<<"$nodes"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo; echo "paddock server exited; the end of $log:" >&2; tail -n 30 "$log" >&2; exit 1
  fi
  if [ $SECONDS -ge $deadline ]; then
    echo; echo "the node is not Ready after ${TIMEOUT}s; the end of $log:" >&2; tail -n 30 "$log" >&2; exit 1
  fi
  echo -n .; sleep 1
done
echo

cat <<TEXT
Paddock is running: $(awk '{print $1}' <<<"$nodes" | paste -sd' ') Ready.
Try the original lab's walkthrough:

  export KUBECONFIG=$KUBECONFIG_OUT
  kubectl get nodes -o wide
  kubectl run nginx --image=nginx
  kubectl get po -o wide
  kubectl expose pod nginx --type=NodePort --port=80
  kubectl get svc nginx              # then: curl http://<node IP>:<the 3xxxx port>/

Workers join with the token in $DATA_DIR/server/token (README.md, "Joining workers").
\`make stop\` stops the server; its state stays in $DATA_DIR.
TEXT
