import time
from tools.predictor.bench_datasets import read_cdnow
from tools.predictor.bench_clv import run_clv, clv_score_table
ev = read_cdnow('.cache/datasets/CDNOW_master.txt')
t=time.time(); run_clv("cdnow", ev, "/tmp/p15-clv", models=("clv_combined",), say=lambda s: None); print(time.time()-t)
print(clv_score_table("/tmp/p15-clv"))
