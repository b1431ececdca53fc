#!/usr/bin/env bash
# GPU check of DRIVE's update on a machine with CUDA: steps 1-2 take under 5 minutes,
# step 3 up to 5 more.
#
#   bash benchmarks/gpu_check.sh            # from the repository root, in the project's venv
#
# 1. benchmarks/update_step.py on cuda: the core update step at headline sizes (E 7 of
#    4x200, 256x256 nets, H 5, N 1) in float32 and in bfloat16 mixed precision
#    (precision="bfloat16"), next to a plain-torch SAC step, batch 256 and 1,024;
# 2. three DRIVE iterations on HalfCheetah-v5 at headline sizes with one local Learner on
#    the GPU (num_gpus_per_learner=1): ms per update step from RLlib's learner timer, and
#    an assertion that every tensor of the Learner's RLModule and of its optimizers lives
#    on cuda (and that the EnvRunner's copy acts on the CPU), and that the skip-on-NaN
#    check (all_finite) finds NaN and inf there; then torch.profiler over 10
#    update steps through RLlib: the top operators, and how long the kernels kept the GPU
#    busy per step (on the H100 the Learner's step took 43 ms where step 1's core step
#    took 33: where the other 10 go is the profile's question).
# 3. DRIVE's update against RLlib SAC's on the GPU: benchmarks/learner_update.py with both local Learners
#    there (--num-gpus-per-learner 1), DRIVE's learner update at headline sizes, the default
#    (eager) and compiled (torch_compile_learner), against RLlib SAC's, 5 interleaved rounds.
#    It compiles first (minutes), so it runs last and its failure does not fail the check.
# Without a CUDA device it prints "no CUDA device" and exits 0 (nothing to check).
# Figures and log of a run on an H100: benchmarks/results/gpu_check/.
#
# GPU_CHECK_CUDAGRAPHS=1 adds to step 3, in the same rotation, the learner update compiled
# with CUDA graphs (torch_compile_learner_dynamo_mode="reduce-overhead"): the step is
# hundreds of small kernels, so on a GPU their launches may cost more than their
# arithmetic. Step 3's limit goes from 5 to 7 minutes. learner_update.py then prints how
# many compiled graphs inductor ran without CUDA graphs (0 is the aim), and TORCH_LOGS=
# cudagraphs logs the reason of each skip.
# GPU_CHECK_OUT=DIR also writes the figures of steps 1 and 3 there as JSON (and step 2's
# profile as a trace).
# GPU_CHECK_DRY_RUN=1 runs every step on the CPU with a few update steps each and no RLlib
# SAC, in about a minute: it checks the script and measures nothing (tests/test_gpu_check.py
# runs it, so that a check only a lent GPU runs cannot rot unseen).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python -c "import torch, drive_rllib" 2>/dev/null; then
    echo "gpu_check: ERROR: python cannot import torch and drive_rllib; activate the project's venv." >&2
    exit 2
fi
if [ "${GPU_CHECK_DRY_RUN:-0}" = "1" ]; then
    # The whole script on the CPU, with a few update steps each and no RLlib SAC: it
    # checks that the script runs (tests/test_gpu_check.py), and measures nothing.
    export GPU_CHECK_DEVICE=cpu
    echo "gpu_check: DRY RUN on the CPU (GPU_CHECK_DRY_RUN=1): every step with a few update" \
         "steps; it checks the script and measures nothing."
    steps=(--repeats 1 --steps 1)
else
    if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu_check: SKIPPED: no CUDA device (torch $(python -c 'import torch; print(torch.__version__)')," \
             "torch.cuda.is_available() is False); nothing was checked."
        exit 0
    fi
    export GPU_CHECK_DEVICE=cuda
    python -c "import torch; print('gpu_check: device', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
    steps=(--repeats 5 --steps 20)
fi

# GPU_CHECK_OUT=DIR also writes each benchmark's figures there as JSON.
json_to() { if [ -n "${GPU_CHECK_OUT:-}" ]; then echo --json "$GPU_CHECK_OUT/$1"; fi; }

for batch in 256 1024; do
    timeout 120 python benchmarks/update_step.py --device "$GPU_CHECK_DEVICE" --batch "$batch" \
        --model-hiddens 200 200 200 200 --horizons 5 --samples 1 "${steps[@]}" \
        --precision float32 bfloat16 $(json_to "update_step_${GPU_CHECK_DEVICE}_b$batch.json")
done

timeout 240 python - <<'PY'
import os
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
import ray
import torch

from drive_rllib.algorithm import DRIVEConfig

device = os.environ["GPU_CHECK_DEVICE"]  # "cpu" only in a dry run
gpus = 1 if device == "cuda" else 0
dry = device != "cuda"
ray.init(address="local", num_cpus=4, num_gpus=gpus, include_dashboard=False,
         configure_logging=False, log_to_driver=False)
updates = 4 if dry else 200
config = (
    DRIVEConfig()
    .environment("HalfCheetah-v5")
    .env_runners(num_env_runners=1, num_envs_per_env_runner=8)
    .learners(num_learners=0, num_gpus_per_learner=gpus)
    .training(
        ensemble_size=7, num_elites=5, model_hiddens=[200, 200, 200, 200],
        policy_hiddens=[256, 256], value_hiddens=[256, 256], train_batch_size_per_learner=256,
        horizon=5, num_samples=1, env_steps_per_iteration=1000, num_warmup_steps=1000,
        updates_per_iteration=updates, model_eval_interval=100,
    )
)
algo = config.build_algo()
for iteration in range(1 if dry else 3):
    start = time.perf_counter()
    result = algo.train()
    wall = time.perf_counter() - start
    update_s = result["timers"]["learner_update_timer"]
    print(f"gpu_check: iteration {iteration + 1}: {wall:.1f} s, learner update "
          f"{update_s * 1000 / updates:.2f} ms per update step "
          f"(C {updates}, B 256, H 5, N 1), replay {result['replay/size']}")


def devices(learner):
    module = learner.module["default_policy"].unwrapped()
    found = {str(t.device) for t in module.state_dict().values()}
    for _, optimizer in learner.get_optimizers_for_module("default_policy"):
        for state in optimizer.state.values():
            found |= {str(v.device) for v in state.values() if torch.is_tensor(v)}
    return found


# A local Learner's foreach_learner returns RemoteCallResults: one result, no indexing.
learner_devices = next(iter(algo.learner_group.foreach_learner(devices))).get()
assert all(d.split(":")[0] == device for d in learner_devices), learner_devices
runner_devices = algo.env_runner_group.foreach_env_runner(
    lambda runner: {str(p.device) for p in runner.module.parameters()}, local_env_runner=False
)
print(f"gpu_check: learner tensors on {sorted(learner_devices)}; env runner module on "
      f"{sorted(set().union(*runner_devices))}")
# The skip-on-NaN rule's check (learner.all_finite: one _foreach_norm on an accelerator,
# per-tensor min/max on a CPU) finds NaN and +-inf on this device.
from drive_rllib.algorithm.learner import all_finite

probe = [torch.ones(1000, device=device), torch.zeros(7, 5, device=device),
         torch.tensor(2.0, device=device)]
assert all_finite(probe)
for bad in (float("nan"), float("inf"), -float("inf")):
    for index, place in ((1, (3, 2)), (2, ())):
        spoiled = [t.clone() for t in probe]
        spoiled[index][place] = bad
        assert not all_finite(spoiled), (bad, index)
print(f"gpu_check: all_finite finds NaN and inf on {device}")
print("gpu_check: OK")

# Where the Learner's step goes on the GPU: torch.profiler over 10 update steps through
# RLlib, as benchmarks/learner_update.py runs them (step 1 times the core step alone; the
# difference is the Learner's and RLlib's own work). GPU_CHECK_OUT keeps the trace.
import sys

from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, "benchmarks")
from learner_update import drive_update

profiled = 2 if dry else 10
drive_update(algo, profiled)  # warm
activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpus else [])
with profile(activities=activities) as prof:
    ms = drive_update(algo, profiled)
events = prof.key_averages()
device_us = sum(getattr(e, "self_device_time_total", 0) for e in events)
print(f"gpu_check: {profiled} profiled update steps through RLlib: {ms:.2f} ms per step with "
      f"the profiler on; kernels busy {device_us / 1000 / profiled:.2f} ms per step")
print(events.table(sort_by="self_cpu_time_total", row_limit=20))
if gpus:
    print(events.table(sort_by="self_device_time_total", row_limit=15))
if os.environ.get("GPU_CHECK_OUT"):
    prof.export_chrome_trace(os.path.join(os.environ["GPU_CHECK_OUT"], "learner_trace.json.gz"))
algo.stop()
ray.shutdown()
PY

# DRIVE's learner update (the default, eager, and the named settings) against RLlib SAC's,
# both Learners on the GPU, in one rotation; a setting that fails to build or compile is
# left out of the rotation, and a failure or timeout of the whole is reported, not fatal.
if [ "$GPU_CHECK_DEVICE" = "cpu" ]; then
    # The dry run: one round of two steps, no RLlib SAC (the harness may not be beside the
    # checkout), and a compiled setting traced by aot_eager (seconds, not minutes).
    timeout 300 python benchmarks/learner_update.py --rounds 1 --updates 2 --prewarm 2 --no-sac \
        --settings 'compiled={"torch_compile_learner": true, "torch_compile_learner_dynamo_backend": "aot_eager"}' \
        $(json_to learner_update_cpu.json)
    exit 0
fi
settings=('compiled={"torch_compile_learner": true}')
limit=300
if [ "${GPU_CHECK_CUDAGRAPHS:-0}" = "1" ]; then
    settings+=('cudagraphs={"torch_compile_learner": true, "torch_compile_learner_dynamo_mode": "reduce-overhead"}')
    limit=420
    # learner_update.py prints how many graphs ran without CUDA graphs; this logs why.
    export TORCH_LOGS="${TORCH_LOGS:-cudagraphs}"
fi
timeout "$limit" python benchmarks/learner_update.py --num-gpus-per-learner 1 --rounds 5 \
    --updates 20 --prewarm 100 --settings "${settings[@]}" $(json_to learner_update_cuda.json) \
    || echo "gpu_check: the ratio on the GPU failed or timed out (exit $?); the checks above stand."
