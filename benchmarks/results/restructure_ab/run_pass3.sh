#!/bin/bash
# pass 3: old (9b4fc23) vs the final branch head, after the first driver ends.
while kill -0 $(cat /tmp/ab/driver.pid) 2>/dev/null; do sleep 10; done
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
PY=/work/main/.venv/bin/python
L=/tmp/ab/logs
pass=3
for side in old new; do
  if [ $side = old ]; then T=/work/wt/_before; else T=/tmp/ab/final; fi
  echo "$(date -u +%T) start attribution $side pass $pass (uptime: $(uptime))" >> $L/progress
  (cd $T && PYTHONPATH=$T nice -n 10 $PY benchmarks/attribution_speed.py --threads 1 --repeats 2 --cases 4 \
      --json $L/attr_${side}_$pass.json > $L/attr_${side}_$pass.log 2>&1)
  echo "$(date -u +%T) start fix $side pass $pass (uptime: $(uptime))" >> $L/progress
  (cd $T && PYTHONPATH=$T nice -n 10 $PY benchmarks/fix_throughput.py --threads 1 --repeats 2 --templates 6 --cases 6 \
      --json $L/fix_${side}_$pass.json > $L/fix_${side}_$pass.log 2>&1)
done
echo "$(date -u +%T) done pass 3" >> $L/progress
