#!/bin/bash
# A/B: old tree (/work/wt/_before, 9b4fc23) vs the restructure snapshot, interleaved old,new,old,new.
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
PY=/work/main/.venv/bin/python
L=/tmp/ab/logs
for pass in 1 2; do
  for side in old new; do
    if [ $side = old ]; then T=/work/wt/_before; else T=/tmp/ab/new; fi
    echo "$(date -u +%T) start attribution $side pass $pass (uptime: $(uptime))" >> $L/progress
    (cd $T && PYTHONPATH=$T nice -n 10 $PY benchmarks/attribution_speed.py --threads 1 --repeats 2 --cases 4 \
        --json $L/attr_${side}_$pass.json > $L/attr_${side}_$pass.log 2>&1)
    echo "$(date -u +%T) start fix $side pass $pass (uptime: $(uptime))" >> $L/progress
    (cd $T && PYTHONPATH=$T nice -n 10 $PY benchmarks/fix_throughput.py --threads 1 --repeats 2 --templates 6 --cases 6 \
        --json $L/fix_${side}_$pass.json > $L/fix_${side}_$pass.log 2>&1)
  done
done
echo "$(date -u +%T) done" >> $L/progress
