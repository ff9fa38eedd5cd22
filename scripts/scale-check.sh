#!/usr/bin/env bash
# Scale check for chainlog against MLflow as a platform team runs it (issue 12). Not part of
# `cargo test`: run by hand, it takes a few minutes.
#
#   scripts/scale-check.sh [N]        (N concurrent writers and N readers, default 20)
#
# Starts, all on 127.0.0.1 and all stopped (by PID) when the script exits:
#   - PostgreSQL (initdb/pg_ctl on PATH; run as the unprivileged user `chainlog-pg`, created if
#     absent, when the script runs as root, since PostgreSQL refuses to run as root),
#   - moto's S3 server (moto[server] from PyPI) with one bucket,
#   - `mlflow server --backend-store-uri postgresql://… --no-serve-artifacts
#     --default-artifact-root s3://…` (clients, chainlog included, write S3 themselves).
# Then logs one seed model, and runs at once N writers (`chainlog log summarize`, each
# registering a version of `scale-model`) and N readers (`chainlog predict -m
# models:/scale-seed@champion`, each with its own empty cache). Prints counts and times, and
# checks with MLflow's own client that versions 1..N of `scale-model` exist once each (none
# lost, none doubled), each pointing at a READY model of a FINISHED run with its files in S3.
# Exits 1 when a check fails.
#
# Settings: CHAINLOG_BIN (default: $CARGO_TARGET_DIR or ./target, debug/chainlog),
# CHAINLOG_SCALE_VENV (a venv with scripts/scale-requirements.txt; default: created under
# ~/.cache/chainlog-scale), MLFLOW_WORKERS (default 4).
set -euo pipefail

N=${1:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CHAINLOG=${CHAINLOG_BIN:-$TARGET/debug/chainlog}
REQUIREMENTS=$ROOT/scripts/scale-requirements.txt
KEY=$(sha256sum "$REQUIREMENTS" | cut -c1-12)
VENV=${CHAINLOG_SCALE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/chainlog-scale/venv-$KEY}
WORKERS=${MLFLOW_WORKERS:-4}
PG_USER=chainlog-pg

die() { echo "scale-check: $*" >&2; exit 1; }
[[ $N =~ ^[0-9]+$ && $N -ge 1 ]] || die "N must be a positive integer, got '$N'"
[[ -x $CHAINLOG ]] || die "no chainlog binary at $CHAINLOG: run \`cargo build\` or set CHAINLOG_BIN"
for tool in initdb pg_ctl python3; do
  command -v "$tool" >/dev/null || die "$tool is not on PATH (PostgreSQL: apt-get install postgresql)"
done

if [[ ! -x $VENV/bin/python || ! -f $VENV/.provisioned ]]; then
  echo "scale-check: creating $VENV (pip install -r scripts/scale-requirements.txt)" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r "$REQUIREMENTS"
  touch "$VENV/.provisioned"
fi
PY=$VENV/bin/python

WORK=$(mktemp -d /tmp/chainlog-scale.XXXXXX)
chmod 755 "$WORK"
PIDS=()
PG_STARTED=
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    # Each server was started with setsid: its PID is its process group.
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  if [[ -n $PG_STARTED ]]; then
    as_pg pg_ctl -D "$WORK/pg" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# PostgreSQL refuses to run as root: as root, run it as an unprivileged system user.
if [[ $(id -u) == 0 ]]; then
  id "$PG_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
  mkdir -p "$WORK/pg" "$WORK/pgsock"
  chown "$PG_USER:" "$WORK/pg" "$WORK/pgsock"
  as_pg() { setpriv --reuid="$PG_USER" --regid="$PG_USER" --init-groups --reset-env -- "$(command -v "$1")" "${@:2}"; }
else
  mkdir -p "$WORK/pg" "$WORK/pgsock"
  as_pg() { "$@"; }
fi

PG_PORT=$(free_port)
as_pg initdb -D "$WORK/pg" -U mlflow --auth=trust >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log"; die "initdb failed"; }
as_pg pg_ctl -D "$WORK/pg" -l "$WORK/pgsock/pg.log" -w \
  -o "-h 127.0.0.1 -p $PG_PORT -k $WORK/pgsock -c max_connections=200" start >/dev/null \
  || { cat "$WORK/pgsock/pg.log"; die "PostgreSQL did not start"; }
PG_STARTED=1
"$PY" - "$PG_PORT" <<'EOF'
import sys, psycopg2
conn = psycopg2.connect(host="127.0.0.1", port=int(sys.argv[1]), user="mlflow", dbname="postgres")
conn.autocommit = True
conn.cursor().execute("CREATE DATABASE mlflow")
EOF

S3_PORT=$(free_port)
export MLFLOW_S3_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export AWS_ACCESS_KEY_ID=scale-key AWS_SECRET_ACCESS_KEY=scale-secret AWS_DEFAULT_REGION=us-east-1
setsid "$PY" -m moto.server -H 127.0.0.1 -p "$S3_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $S3_PORT), 1)" 2>/dev/null && break; sleep 0.2; done
"$PY" -c "import boto3, os; boto3.client('s3', endpoint_url=os.environ['MLFLOW_S3_ENDPOINT_URL']).create_bucket(Bucket='scale')"

MLFLOW_PORT=$(free_port)
export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "$PY" -m mlflow server --host 127.0.0.1 --port "$MLFLOW_PORT" \
  --workers "$WORKERS" --backend-store-uri "postgresql+psycopg2://mlflow@127.0.0.1:$PG_PORT/mlflow" \
  --no-serve-artifacts --default-artifact-root s3://scale/mlflow >"$WORK/mlflow.log" 2>&1 &
PIDS+=($!)
MLFLOW_PID=$!
for i in $(seq 600); do
  curl -sf "$MLFLOW_TRACKING_URI/health" >/dev/null 2>&1 && break
  kill -0 "$MLFLOW_PID" 2>/dev/null || { tail -30 "$WORK/mlflow.log"; die "mlflow server exited"; }
  [[ $i == 600 ]] && { tail -30 "$WORK/mlflow.log"; die "mlflow server did not answer /health"; }
  sleep 0.2
done
echo "scale-check: PostgreSQL :$PG_PORT, moto :$S3_PORT, mlflow server :$MLFLOW_PORT ($WORKERS workers), N=$N" >&2

cd "$ROOT"
unset OPENAI_BASE_URL OPENAI_API_KEY
log_args=(log summarize --config chains/summarize.yaml --prompts-dir prompts --experiment scale --json)
now() { date +%s.%N; }

# One seed model for the readers.
"$CHAINLOG" "${log_args[@]}" --input-example '{"text": "seed"}' --registered-model scale-seed \
  --alias champion >"$WORK/seed.json" 2>"$WORK/seed.err" || { cat "$WORK/seed.err"; die "seed log failed"; }

writer() {
  local i=$1 start end code=0
  start=$(now)
  "$CHAINLOG" "${log_args[@]}" --input-example "{\"text\": \"writer $i\"}" --run-name "writer-$i" \
    --registered-model scale-model >"$WORK/w$i.json" 2>"$WORK/w$i.err" || code=$?
  end=$(now)
  echo "$code $start $end" >"$WORK/w$i.time"
}
reader() {
  local i=$1 start end code=0
  start=$(now)
  CHAINLOG_CACHE_DIR=$WORK/cache-r$i "$CHAINLOG" predict -m models:/scale-seed@champion \
    --input "{\"text\": \"reader $i\"}" >"$WORK/r$i.json" 2>"$WORK/r$i.err" || code=$?
  end=$(now)
  echo "$code $start $end" >"$WORK/r$i.time"
}

T0=$(now)
CLIENTS=()
for i in $(seq "$N"); do
  writer "$i" & CLIENTS+=($!)
  reader "$i" & CLIENTS+=($!)
done
for pid in "${CLIENTS[@]}"; do wait "$pid" || true; done
T1=$(now)

"$PY" - "$WORK" "$N" "$T0" "$T1" <<'EOF'
import json, os, statistics, sys
import boto3
from mlflow import MlflowClient

work, n, t0, t1 = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])

def results(kind):
    out = []
    for i in range(1, n + 1):
        code, start, end = open(f"{work}/{kind}{i}.time").read().split()
        out.append((int(code), float(end) - float(start), i))
    return out

def summary(name, rows):
    ok = [t for code, t, _ in rows if code == 0]
    failed = [(i, open(f"{work}/{name[0]}{i}.err").read().strip().splitlines()[-1:] ) for code, _, i in rows if code != 0]
    times = sorted(t for _, t, _ in rows)
    print(f"{name}: {len(ok)}/{len(rows)} ok; seconds min {times[0]:.2f} median {statistics.median(times):.2f} max {times[-1]:.2f}")
    for i, err in failed:
        print(f"  {name} {i} failed: {err}")
    return len(ok)

print(f"N={n}: {n} writers and {n} readers at once, wall {t1 - t0:.2f} s")
writers_ok = summary("writers", results("w"))
readers_ok = summary("readers", results("r"))

client = MlflowClient()
logged = {}
for i in range(1, n + 1):
    try:
        row = json.load(open(f"{work}/w{i}.json"))
        logged[row["model_id"]] = row
    except (OSError, ValueError, KeyError):
        pass
versions = client.search_model_versions("name='scale-model'", max_results=10000)
numbers = sorted(int(v.version) for v in versions)
problems = []
if numbers != list(range(1, writers_ok + 1)):
    problems.append(f"version numbers {numbers} are not 1..{writers_ok}")
# A version's source is models:/<model_id> (search results leave model_id empty).
def model_of(version):
    return version.model_id or version.source.removeprefix("models:/")
if len({model_of(v) for v in versions}) != len(versions):
    problems.append("two versions point at one model")
s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
objects = 0
for v in versions:
    if model_of(v) not in logged:
        problems.append(f"version {v.version} points at {model_of(v)}, which no writer reported")
        continue
    model = client.get_logged_model(model_of(v))
    run = client.get_run(model.source_run_id)
    if "READY" not in str(model.status):
        problems.append(f"model {model.model_id} is {model.status}")
    if run.info.status != "FINISHED":
        problems.append(f"run {run.info.run_id} is {run.info.status}")
    bucket, _, prefix = model.artifact_location.removeprefix("s3://").partition("/")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    count = sum(len(page.get("Contents", [])) for page in pages)
    if count == 0:
        problems.append(f"model {model.model_id} has no files in S3")
    objects += count
print(f"registry: {len(versions)} versions of scale-model, numbers 1..{max(numbers, default=0)}; "
      f"{objects} S3 objects under their models ({objects // max(len(versions), 1)} each)")
for problem in problems:
    print(f"PROBLEM: {problem}")
print("check: " + ("ok" if not problems and writers_ok == n and readers_ok == n else "FAILED"))
sys.exit(1 if problems or writers_ok != n or readers_ok != n else 0)
EOF
