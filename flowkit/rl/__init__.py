"""ReinFlow: online RL fine-tuning of flow policies (Zhang et al. 2025).

A flow policy's K-step Euler chain is made stochastic with a learned, bounded noise, which
gives an exact chain likelihood (:mod:`flowkit.rl.policy`); PPO on that likelihood
(:mod:`flowkit.rl.ppo`, :mod:`flowkit.rl.advantages`) in vectorised gymnasium environments
(:mod:`flowkit.rl.rollout`), after behaviour cloning on locally made demonstrations
(:mod:`flowkit.rl.demonstrations`, :mod:`flowkit.rl.pretrain`). The loop
(:class:`ReinFlowTrainer`) is ``flowkit reinflow``. gymnasium is the ``rl`` extra.

The same chain likelihood fine-tunes a saved image flow against a reward with one-step
episodes (:class:`NoisyFlowGenerator`, :class:`GeneratorRewardTrainer`; ``task: generator``
in a ``flowkit reinflow`` config), with the exact chain KL to the pretrained model.
"""

from flowkit._lazy import lazy_getattr

__all__ = [
    "ActionBounds",
    "ChainSample",
    "GaussianPolicy",
    "GeneratorRewardConfig",
    "GeneratorRewardTrainer",
    "NoisyFlowGenerator",
    "NoisyFlowPolicy",
    "PPOBatch",
    "PPOSettings",
    "ReinFlowConfig",
    "ReinFlowTrainer",
    "RunningNorm",
    "bounded_sigma",
    "chain_log_prob",
    "clipped_surrogate",
    "digits_class_reward",
    "gae",
    "load_policy",
    "load_velocity_model",
    "make_demonstrations",
    "ppo_loss",
    "ppo_update",
    "sample_chain",
    "save_policy",
    "step_kl",
    "time_grid",
]

__getattr__ = lazy_getattr(
    __name__,
    {
        "ActionBounds": "policy",
        "ChainSample": "policy",
        "GaussianPolicy": "gaussian",
        "GeneratorRewardConfig": "generator_config",
        "GeneratorRewardTrainer": "generator_trainer",
        "NoisyFlowGenerator": "generator",
        "NoisyFlowPolicy": "policy",
        "PPOBatch": "ppo",
        "PPOSettings": "ppo",
        "ReinFlowConfig": "config",
        "ReinFlowTrainer": "trainer",
        "RunningNorm": "normalizer",
        "bounded_sigma": "policy",
        "chain_log_prob": "policy",
        "clipped_surrogate": "ppo",
        "digits_class_reward": "generator",
        "gae": "advantages",
        "load_policy": "saved",
        "load_velocity_model": "generator",
        "make_demonstrations": "demonstrations",
        "ppo_loss": "ppo",
        "ppo_update": "ppo",
        "sample_chain": "policy",
        "save_policy": "saved",
        "step_kl": "generator",
        "time_grid": "policy",
    },
)
