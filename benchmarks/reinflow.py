"""Rollout throughput of ReinFlow: environment steps per second of
:func:`flowkit.rl.rollout.collect_rollout` (noisy K-step chain, its log-likelihood, the
critic on s and s', bookkeeping) against a bare loop of the same policy's noise-free
forward passes (K velocity evaluations) plus the environment steps.

    python benchmarks/reinflow.py --out benchmarks/results/reinflow_rollout.md

Both run in one process on one torch thread (SyncVectorEnv steps in-process), interleaved
round by round; the table gives the median CPU time of the process per environment step
(``time.process_time``: the machine is shared, so wall time is noisier) and the ratio.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_common import cpu_name, write_result  # noqa: E402

from flowkit.rl.envs import check_spaces, iteration_seeds, make_envs  # noqa: E402
from flowkit.rl.networks import ValueNet  # noqa: E402
from flowkit.rl.normalizer import RunningNorm  # noqa: E402
from flowkit.rl.policy import ActionBounds, NoisyFlowPolicy  # noqa: E402
from flowkit.rl.rollout import collect_rollout  # noqa: E402


@torch.no_grad()
def bare_loop(envs, policy, bounds, steps: int, seeds: list[int]) -> None:
    """Noise-free actions and environment steps, nothing else."""
    raw, _ = envs.reset(seed=seeds)
    dtype = envs.single_action_space.dtype
    for _ in range(steps):
        a = policy.deterministic(torch.as_tensor(raw, dtype=torch.float32))
        raw, *_ = envs.step(bounds.to_env(a).numpy().astype(dtype))


def measure(env_id: str, k: int, num_envs: int, steps: int, rounds: int, width: int) -> dict:
    envs = make_envs(env_id, num_envs)
    obs_dim, action_dim = check_spaces(envs)
    torch.manual_seed(0)
    policy = NoisyFlowPolicy(obs_dim, action_dim, k, hidden_dim=width, num_layers=3)
    value = ValueNet(obs_dim, width, 3)
    norm, bounds = RunningNorm(obs_dim), ActionBounds.from_space(envs.single_action_space)
    gen = torch.Generator().manual_seed(0)
    times = {"rollout": [], "bare": []}
    for r in range(rounds + 1):  # round 0 warms up
        seeds = iteration_seeds(0, r, num_envs)
        for name in ("rollout", "bare") if r % 2 == 0 else ("bare", "rollout"):
            tic = time.process_time()
            if name == "rollout":
                collect_rollout(envs, policy, value, norm, bounds, steps, seeds, gen)
            else:
                bare_loop(envs, policy, bounds, steps, seeds)
            if r:
                times[name].append((time.process_time() - tic) / (steps * num_envs))
    envs.close()
    return {name: statistics.median(v) for name, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", nargs="+", default=["Pendulum-v1", "Hopper-v5"])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4], help="values of K")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--rollout-steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for env_id in args.envs:
        for k in args.steps:
            t = measure(env_id, k, args.num_envs, args.rollout_steps, args.rounds, args.width)
            rows.append(f"| {env_id} | {k} | {1 / t['bare']:.0f} | {1 / t['rollout']:.0f} | "
                        f"{t['rollout'] / t['bare']:.2f} |")  # fmt: skip
            print(rows[-1], flush=True)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    command = "python " + shlex.join(["benchmarks/reinflow.py", *sys.argv[1:]])
    text = "\n".join([
        "# ReinFlow rollout throughput: environment steps per CPU second",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs (shared), 1 torch thread; "
        f"torch {torch.__version__}; numpy {np.__version__}. Load average after: {load}.",
        f"Command: `{command}`",
        "",
        f"{args.num_envs} envs (SyncVectorEnv), {args.rollout_steps} steps a round, median of "
        f"{args.rounds} interleaved rounds; policy: velocity net {args.width} x 3 residual "
        "blocks, noise net 128 x 2, critic 256 x 3. *bare*: noise-free chain + env step; "
        "*rollout*: `collect_rollout` (noisy chain with its log-likelihood, the critic on s "
        "and s', the observation normaliser, storage). Higher steps/s is faster.",
        "",
        "| env | K | bare steps/s | rollout steps/s | rollout time / bare |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
    ])  # fmt: skip
    print(text)
    if args.out:
        write_result(args.out, text)


if __name__ == "__main__":
    main()
