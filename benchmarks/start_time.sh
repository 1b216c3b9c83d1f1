#!/bin/bash
# Start-up time (wall and CPU) of `promptlens --help` and of a fully cached `promptlens lint`, for two trees
# side by side (interleaved, so both see the same load). Usage, from a checkout:
#   benchmarks/start_time.sh [BEFORE_REV] [AFTER_REV] [REPEATS]      (default: main HEAD 5)
# Each revision is exported with `git archive` into a temporary folder (as a fresh clone would
# be); the lint cache of each is filled in-process with a rule fake under the embedded model's
# name, so the timed runs never load a model. Prints one line per run and the medians, with a
# bare `python -c pass` per round for the load the machine was under.
set -euo pipefail
BEFORE=${1:-main}; AFTER=${2:-HEAD}; N=${3:-5}
PY=${PYTHON:-python}
ROOT=$(git rev-parse --show-toplevel)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for side in before after; do
  rev=$BEFORE; [ $side = after ] && rev=$AFTER
  mkdir -p "$WORK/$side/tree" "$WORK/$side/project"
  git -C "$ROOT" archive "$rev" | tar -x -C "$WORK/$side/tree"
  cd "$WORK/$side/project"
  printf 'Is it plausible or implausible?\nStatement: {input}\nAnswer with one word.\n' > t.txt
  echo '{"vars": {"input": "A scored"}, "target": "plausible", "choices": ["plausible", "implausible"]}' > c.jsonl
  printf 'templates:\n  - {path: t.txt, cases: c.jsonl}\n' > promptlens.yaml
  PYTHONPATH="$WORK/$side/tree" HF_HUB_OFFLINE=1 "$PY" -c "
import sys; sys.path.insert(0, '$WORK/$side/tree')
from pathlib import Path
from promptlens.lint import LintTarget, lint
from tests.rule_backend import RuleBackend
lint([LintTarget(Path('t.txt'), Path('c.jsonl'))], cache_dir='.promptlens-cache/lint',
     backend=RuleBackend(name='SmolLM2-135M-Instruct'))"
done
# "WALL CPU": wall seconds, and user+sys CPU seconds (what the load does not inflate), of one run.
seconds() {
  local e u s
  /usr/bin/time -o "$WORK/time" -f "%e %U %S" "$@" > /dev/null 2>&1 || true
  read -r e u s < <(tail -n 1 "$WORK/time")   # after a "Command exited with non-zero status" line
  echo "$e $(echo "$u + $s" | bc)"
}
for i in $(seq "$N"); do
  echo "bare python-c-pass $(seconds "$PY" -c pass)"   # the interpreter alone, at the same load
  for side in before after; do
    cd "$WORK/$side/project"   # a folder with no promptlens/ in it: `python -m` puts the cwd first
    export PYTHONPATH="$WORK/$side/tree" HF_HUB_OFFLINE=1
    echo "help $side $(seconds "$PY" -m promptlens --help)"
    echo "lint $side $(seconds "$PY" -m promptlens lint)"
  done
done | tee "$WORK/times.txt"
echo "medians (s): wall, CPU (user+sys); load: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo ?), $(nproc) cores:"
median() {  # column $1's median per "command side"
  sort -k1,2 -k"$1"n "$WORK/times.txt" | awk -v c="$1" '{k=$1"/"$2; v[k]=v[k]" "$c; n[k]++}
    END {for (k in v) {split(v[k], a, " "); print k, a[int((n[k]+1)/2)]}}' | sort
}
join <(median 3) <(median 4) | awk '{sub("/", " ", $1); print "  " $1 ": " $2 " wall, " $3 " CPU"}'
