import sys, time, statistics, dataclasses, torch
sys.path.insert(0, "benchmarks")
import update_step as us
from drive_rllib.core import update
torch.set_num_threads(1)
compiled = "--compile" in sys.argv
orig = update.value_target
def short_target(nets, shared, reward, next_obs, terminated, spec):
    return orig(nets, shared, reward, next_obs, terminated, dataclasses.replace(spec, horizon=1))
full = us.drive_step_fn(5, 1, 256, 7, (200,200,200,200), precision="bfloat16", compiled=compiled)
update.value_target = short_target
short = us.drive_step_fn(5, 1, 256, 7, (200,200,200,200), precision="bfloat16", compiled=compiled)
update.value_target = orig
def timeit(step, n=10):
    t=time.perf_counter()
    for _ in range(n): step()
    return (time.perf_counter()-t)*1000/n
# warm (compiles)
for s, patch in ((full, False), (short, True)):
    update.value_target = short_target if patch else orig
    for _ in range(3): s()
res = {"full": [], "short": []}
for r in range(5):
    update.value_target = orig; res["full"].append(timeit(full))
    update.value_target = short_target; res["short"].append(timeit(short))
print({k: round(statistics.median(v),1) for k,v in res.items()})
