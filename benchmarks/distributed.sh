#!/usr/bin/env bash
# Two `promptlens fix --join` workers on one PostgreSQL study against one worker, same budget.
# Starts a throwaway PostgreSQL cluster on loopback in a temp dir and removes it afterwards.
#
#   benchmarks/distributed.sh [TRIALS]     (default 24)
#
# Env: PYTHON (default .venv/bin/python, with `pip install -e '.[distributed]'`),
#      RECIPE (default recipes/entailed_polarity_quick.yaml), PGBIN (default /usr/lib/postgresql/15/bin),
#      KEEP=DIR copies the workers' logs and JSON reports there before the temp dir is removed,
#      JOURNAL=1 also runs the two workers on a journal file (no server).
# initdb refuses to run as root: as root, the cluster runs as the `postgres` user (runuser).
set -euo pipefail
TRIALS=${1:-24}
PY=${PYTHON:-.venv/bin/python}
RECIPE=${RECIPE:-recipes/entailed_polarity_quick.yaml}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
WORK=$(mktemp -d /tmp/promptlens-dist.XXXXXX)
chmod 755 "$WORK"
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
AS_PG=()
if [ "$(id -u)" = 0 ]; then AS_PG=(runuser -u postgres --); fi
mkdir -p "$WORK/pg" "$WORK/sock"
if [ "$(id -u)" = 0 ]; then chown postgres "$WORK/pg" "$WORK/sock"; fi

stop() {
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cp "$WORK"/*.log "$WORK"/*.json "$KEEP"/ 2>/dev/null || true; fi
  "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap stop EXIT

"${AS_PG[@]}" "$PGBIN/initdb" -D "$WORK/pg" -A trust -U postgres >/dev/null
"${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$WORK/pg" -o "-k $WORK/sock -p $PORT -h 127.0.0.1" -l "$WORK/sock/pg.log" -w start >/dev/null
"${AS_PG[@]}" "$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres promptlens
URL="postgresql://postgres@127.0.0.1:$PORT/promptlens"
echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT; budget $TRIALS trials; $RECIPE"

worker() {  # worker STORAGE STUDY NAME
  HF_HUB_OFFLINE=1 $PY -m promptlens fix "$RECIPE" --threads 1 --trials "$TRIALS" --seconds 100000 \
    --storage "$1" --study "$2" --join --out "$WORK/$3" --json "$WORK/$3.json" > "$WORK/$3.log" 2>&1 \
    || { echo "worker $3 failed:"; tail -5 "$WORK/$3.log"; return 1; }
}
now() { date +%s.%N; }

t0=$(now); worker "$URL" one one; t1=$(now)
worker "$URL" two two-a & a=$!
worker "$URL" two two-b & b=$!
wait $a; wait $b; t2=$(now)
ONE=$(echo "$t1 - $t0" | bc); TWO=$(echo "$t2 - $t1" | bc)
$PY benchmarks/distributed_report.py "$URL" "$TRIALS" one="$ONE" two="$TWO" 2>"$WORK/report.json" || cat "$WORK/report.json"
for w in one two-a two-b; do
  echo "$w: $(grep -m1 '^cost:' "$WORK/$w.log")"
done
# fix writes fixed-template.txt for a text template and fixed-template.json for a message list
FIXED=$(cd "$WORK/two-a" && ls fixed-template.* 2>/dev/null | head -1)
if [ -n "$FIXED" ] && cmp -s "$WORK/two-a/$FIXED" "$WORK/two-b/$FIXED"; then
  echo "both workers wrote the same fixed template ($FIXED)"
else
  echo "the two workers' fixed templates DIFFER (or one is missing: ${FIXED:-none written})"
fi

if [ "${JOURNAL:-0}" = 1 ]; then
  J="journal:$WORK/study.log"
  t3=$(now)
  worker "$J" jtwo j-a & a=$!
  worker "$J" jtwo j-b & b=$!
  wait $a; wait $b; t4=$(now)
  $PY benchmarks/distributed_report.py "$J" "$TRIALS" jtwo="$(echo "$t4 - $t3" | bc)" 2>"$WORK/report.json" || cat "$WORK/report.json"
fi
