"""Re-test on the 32 harm cases the harmful calls that the 24-case bench runs made on three clean twins.

Run after: suite_detection.py --methods ablation --segmentation unit --baseline remove --split harm --cases 32
  --prompts intent_router polarity_judge sports_checker --variants clean --tag harm32_clean --out benchmarks/results/c24
The harm-32 run deletes every unit, so only the deletion rows compare like with like (sibling and answer
replace examples instead of deleting them; their system-sentence units are deleted too and compare directly).
"""
import json, sys, numpy as np, pandas as pd
sys.path.insert(0, '.')
from benchmarks.suite_detection import rule_harmful
from promptlens import stats
new = pd.read_csv('benchmarks/results/c24/suite_detection_unit_harm32_clean_runs.csv')
for _, r in new.iterrows():
    p = r['prompt']
    for base in ['remove', 'sibling', 'answer']:
        stem = {'remove': '', 'sibling': '_sibling', 'answer': '_answer'}[base]
        f = f'benchmarks/results/c24/suite_detection{stem}_unit_c24_{p}_runs.csv'
        try: old = pd.read_csv(f)
        except FileNotFoundError: print('missing', f); continue
        o = old[old.variant == 'clean'].iloc[0]
        pc_old = np.array(json.loads(o['per_case'])).T; pc_new = np.array(json.loads(r['per_case'])).T
        h_old = rule_harmful(pc_old); h_new = rule_harmful(pc_new)
        iv = stats.intervals(pc_new)
        flagged = np.where(h_old)[0]
        print(p, base, 'flagged at 24 bench:', list(flagged), '| harmful on 32 harm:', list(np.where(h_new)[0]))
        for k in flagged:
            print(f'   unit {k}: bench mean {pc_old[:,k].mean():+.3f}; harm32 mean {iv.mean[k]:+.3f} [{iv.low[k]:+.3f}, {iv.high[k]:+.3f}] harmful={h_new[k]}')
