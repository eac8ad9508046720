# Sourced by .ci/run: PostgreSQL (Debian's package) on 127.0.0.1 and an MLflow
# tracking server on loopback, for the two-host scale-out test. Idempotent:
# installs and creates only what is missing, starts only what is stopped.
# Needs root on Debian. Exports ABLATION_TEST_PG and ABLATION_TEST_MLFLOW.

# a machine can have the client tools (psql, pg_ctlcluster) and no server: look for the server itself
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi
pg_ver=$(ls -d /usr/lib/postgresql/*/bin/postgres | cut -d/ -f5 | sort -V | tail -1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$pg_ver main"; then
  pg_createcluster "$pg_ver" main >/dev/null
fi
# listen on loopback only, whatever the cluster's configuration says
mkdir -p "/etc/postgresql/$pg_ver/main/conf.d"
echo "listen_addresses = '127.0.0.1'" >"/etc/postgresql/$pg_ver/main/conf.d/ablation-ci.conf"
pg_ctlcluster "$pg_ver" main status >/dev/null 2>&1 || pg_ctlcluster "$pg_ver" main start
pg_port=$(pg_lsclusters -h | awk -v v="$pg_ver" '$1 == v && $2 == "main" {print $3}')
for _ in $(seq 60); do pg_isready -q -h 127.0.0.1 -p "$pg_port" && break; sleep 1; done
runuser -u postgres -- psql -q -p "$pg_port" -v ON_ERROR_STOP=1 -c \
  "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ablation') THEN
     CREATE ROLE ablation LOGIN CREATEDB PASSWORD 'ablation'; END IF; END \$\$;"
export ABLATION_TEST_PG="postgresql://ablation:ablation@127.0.0.1:$pg_port/postgres"

# an MLflow server on a free loopback port, its store in a temporary folder; stopped when .ci/run exits
mlflow_dir=$(mktemp -d)
mlflow_port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.venv/bin/mlflow server --host 127.0.0.1 --port "$mlflow_port" --workers 1 \
  --backend-store-uri "sqlite:///$mlflow_dir/mlflow.db" --artifacts-destination "$mlflow_dir/artifacts" \
  >"$mlflow_dir/server.log" 2>&1 &
mlflow_pid=$!
trap 'kill "$mlflow_pid" 2>/dev/null; wait "$mlflow_pid" 2>/dev/null; rm -rf "$mlflow_dir"' EXIT
export ABLATION_TEST_MLFLOW="http://127.0.0.1:$mlflow_port"
for _ in $(seq 120); do
  .venv/bin/python -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1] + '/health', timeout=2)" \
    "$ABLATION_TEST_MLFLOW" 2>/dev/null && break
  kill -0 "$mlflow_pid" 2>/dev/null || { cat "$mlflow_dir/server.log"; exit 1; }
  sleep 1
done
