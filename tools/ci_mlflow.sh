#!/usr/bin/env bash
# End-to-end tracking check against a real MLflow server (run by .ci/run):
#  1. a short `metakd train --tracking-uri` run arrives whole (run, params, metrics, artifacts);
#  2. a run during which the server is stopped and restarted still arrives whole.
# Usage: tools/ci_mlflow.sh METAKD_BINARY  (installs MLflow from PyPI into $WORK/venv)
set -euo pipefail
metakd=$(realpath "$1")
tools=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
port=5077
uri="http://127.0.0.1:$port"
server_pid=
# The server goes down as in a crash: SIGKILL to its whole process group, at once (a graceful
# stop takes seconds, and on a busy machine it has outlasted a whole training run).
stop_server() {
    if [[ -n "$server_pid" ]]; then
        kill -KILL -- "-$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
train_pid=
cleanup() {
    stop_server
    # A training run left behind (frozen, or waiting on the server) goes too.
    [[ -n "$train_pid" ]] && kill -KILL "$train_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "mlflow==3.17.2"
start_server() {
    setsid "$work/venv/bin/mlflow" server --host 127.0.0.1 --port "$port" \
        --backend-store-uri "sqlite:///$work/mlflow.db" --artifacts-destination "$work/artifacts" \
        >>"$work/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 240); do
        curl -sf "$uri/health" >/dev/null && return 0
        sleep 0.5
    done
    cat "$work/server.log"
    echo "ci_mlflow: the MLflow server did not start" >&2
    return 1
}

cd "$work"
"$metakd" synth brats --out src --cases 6 --shape 24,32,32 >/dev/null
"$metakd" prepare brats --src src --out shards >/dev/null 2>&1
write_config() {
    cat >"$1" <<TOML
[data]
shards = "shards"
test_cases = 1
meta_val_cases = 1
[model.small]
widths = [4, 8, 8, 8]
[train]
iterations = $2
warmup_iterations = 20
batch_size = 1
crop = [16, 16, 16]
checkpoint_every = 100
[meta]
every = 10
every_warmup = 10
samples = 1
TOML
}

start_server
echo "ci_mlflow: MLflow $("$work/venv/bin/mlflow" --version) at $uri"

# 1. A short run.
write_config short.toml 40
"$metakd" train --config short.toml --out runs/short --tracking-uri "$uri"
python3 "$tools/check_mlflow.py" --uri "$uri" --run-dir runs/short --iterations 40

# 2. The server stops halfway and comes back.
iterations=1500
write_config long.toml $iterations
"$metakd" train --config long.toml --out runs/long --tracking-uri "$uri" --flush-timeout 300 &
train_pid=$!
sent() { cat runs/long/tracking/sent 2>/dev/null || echo 0; }
queued() { wc -l <runs/long/tracking/events.jsonl 2>/dev/null || echo 0; }
for _ in $(seq 600); do
    [[ $(sent) -gt 0 ]] && break
    kill -0 "$train_pid" 2>/dev/null || break
    sleep 0.1
done
# Training is frozen while the server goes down, so the outage starts mid-run however slowly the
# server stops or however fast this machine trains.
if ! kill -STOP "$train_pid" 2>/dev/null; then
    echo "ci_mlflow: training ended before the server could be stopped ($(sent) events sent)" >&2
    exit 1
fi
if [[ $(sent) -eq 0 ]]; then
    echo "ci_mlflow: no event reached the server in the run's first minute" >&2
    exit 1
fi
stop_server
kill -CONT "$train_pid"
echo "ci_mlflow: server stopped after $(sent) events"
sleep 5
before=$(sent)
pending=$(($(queued) - before))
echo "ci_mlflow: $pending events wait on disk while the server is down"
[[ $pending -gt 0 ]] || { echo "ci_mlflow: nothing queued during the outage" >&2; exit 1; }
start_server
echo "ci_mlflow: server restarted"
wait "$train_pid"
train_pid=
python3 "$tools/check_mlflow.py" --uri "$uri" --run-dir runs/long --iterations $iterations
echo "ci_mlflow: passed"
