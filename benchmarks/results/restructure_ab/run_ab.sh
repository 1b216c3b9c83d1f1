#!/bin/bash
# A/B driver: OLD tree against NEW tree, interleaved old, new per pass, one thread, niced.
#   run_ab.sh OLD NEW LOGS PASS...
# As run: run_ab.sh /work/wt/_before /tmp/ab/new /tmp/ab/logs 1 2   (NEW: the split snapshot, fde328e)
#         run_ab.sh /work/wt/_before /tmp/ab/final /tmp/ab/logs 3   (NEW: the branch head, 7be6f52)
set -u
OLD=$1 NEW=$2 L=$3; shift 3
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-/work/main/.venv/bin/python}
for pass in "$@"; do
  for side in old new; do
    if [ $side = old ]; then T=$OLD; else T=$NEW; fi
    echo "$(date -u +%T) start attribution $side pass $pass (uptime: $(uptime))" >> $L/progress
    (cd $T && PYTHONPATH=$T nice -n 10 $PY benchmarks/attribution_speed.py --threads 1 --repeats 2 --cases 4 \
        --json $L/attr_${side}_$pass.json > $L/attr_${side}_$pass.log 2>&1)
    echo "$(date -u +%T) start fix $side pass $pass (uptime: $(uptime))" >> $L/progress
    (cd $T && PYTHONPATH=$T nice -n 10 $PY benchmarks/fix_throughput.py --threads 1 --repeats 2 --templates 6 --cases 6 \
        --json $L/fix_${side}_$pass.json > $L/fix_${side}_$pass.log 2>&1)
  done
done
echo "$(date -u +%T) done passes $*" >> $L/progress
