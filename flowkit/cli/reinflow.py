"""``flowkit reinflow CONFIG``: fine-tune a flow policy online with ReinFlow (PPO)."""

from __future__ import annotations

import argparse
from pathlib import Path

from flowkit.cli.run_command import add_run_arguments, report_interrupt, run_dir

TASKS = ("policy", "generator")

EXAMPLES = """examples:
  flowkit reinflow configs/reinflow_pendulum.yaml --out runs/reinflow_pendulum
  flowkit reinflow configs/reinflow_pendulum.yaml --set policy.steps=1 --set train.seed=1
  flowkit reinflow configs/reinflow_pendulum.yaml --set ppo.iterations=0   # pretrain only
  flowkit reinflow configs/reinflow_pendulum.yaml --out runs/reinflow_pendulum --resume
  flowkit reinflow configs/reinflow_hopper.yaml --out runs/reinflow_hopper
  flowkit reinflow configs/reinflow_digits_reward.yaml --set generator.model=runs/digits
The top-level config key task (policy, the default, or generator) selects what is tuned.
task: policy pretrains the flow policy by behaviour cloning on locally made demonstrations
(pretrain.demonstrations: a built-in controller or a safetensors file with obs and
actions), then runs PPO through the noisy K-step Euler chain. Writes RUN/config.yaml,
RUN/metrics.jsonl (record 0: the pretrained policy), RUN/checkpoints/, RUN/pretrained/ and
RUN/policy/. Ctrl-C or SIGTERM finishes the current iteration, saves a checkpoint and
prints the command that resumes it (exit code 130 / 143). Needs gymnasium:
pip install 'flowkit[rl]'. task: generator fine-tunes a saved image flow (a velocity
field on the rectified path) against a reward (the digits classifier's probability of
reward.target) with one-step episodes and a KL term to the pretrained model, and saves
RUN/pipeline/ for flowkit sample / flowkit fid (no gymnasium needed).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "reinflow",
        help="fine-tune a flow policy or generator with RL (ReinFlow: PPO on a noisy Euler chain)",
        description="ReinFlow: behaviour-clone a rectified-flow policy on demonstrations, "
        "then fine-tune it with PPO through the exact likelihood of its noisy K-step Euler "
        "chain, in vectorised gymnasium environments; or (task: generator) fine-tune a saved "
        "image flow against a reward through the same chain likelihood.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(parser, "configs/reinflow_pendulum.yaml", "ppo.iterations=100")
    parser.set_defaults(run=run)


def config_task(config: str, overrides: list[str]) -> str:
    """The config's top-level ``task`` (``policy`` when absent), overrides applied."""
    from flowkit.files import read_yaml
    from flowkit.training.config import ConfigError, apply_overrides

    values = read_yaml(Path(config), "config file") if Path(config).is_file() else {}
    task = apply_overrides(values or {}, overrides).get("task", "policy")
    if task not in TASKS:
        raise ConfigError(f"task={task!r} in {config}; expected one of {list(TASKS)}")
    return task


def run(args: argparse.Namespace) -> int:
    out = run_dir(args)
    try:
        from flowkit.training.config import load_config

        if config_task(args.config, args.overrides) == "generator":
            from flowkit.rl.generator_config import GeneratorRewardConfig
            from flowkit.rl.generator_trainer import GeneratorRewardTrainer

            config = load_config(args.config, args.overrides, schema=GeneratorRewardConfig)
            trainer = GeneratorRewardTrainer(config, out, resume=args.resume,
                                             progress=not args.no_progress)  # fmt: skip
            pipeline_dir = trainer.fit()
            print(f"ran {trainer.iteration} iterations ({trainer.samples} chains); pipeline "
                  f"saved to {pipeline_dir}")  # fmt: skip
            return 0
        from flowkit.rl.config import ReinFlowConfig
        from flowkit.rl.trainer import ReinFlowTrainer

        config = load_config(args.config, args.overrides, schema=ReinFlowConfig)
        trainer = ReinFlowTrainer(config, out, resume=args.resume, progress=not args.no_progress)
        policy_dir = trainer.fit()
    except KeyboardInterrupt as interrupt:
        return report_interrupt("reinflow", args, out, interrupt, unit="iteration")
    trainer.close()
    print(f"ran {trainer.iteration} iterations ({trainer.env_steps} env steps); policy saved "
          f"to {policy_dir}")  # fmt: skip
    return 0
