"""ReinFlow: online RL fine-tuning of flow policies (Zhang et al. 2025).

A flow policy's K-step Euler chain is made stochastic with a learned, bounded noise, which
gives an exact chain likelihood (:mod:`flowkit.rl.policy`); PPO on that likelihood
(:mod:`flowkit.rl.ppo`, :mod:`flowkit.rl.advantages`) in vectorised gymnasium environments
(:mod:`flowkit.rl.rollout`), after behaviour cloning on locally made demonstrations
(:mod:`flowkit.rl.demonstrations`, :mod:`flowkit.rl.pretrain`). The loop
(:class:`ReinFlowTrainer`) is ``flowkit reinflow``. gymnasium is the ``rl`` extra.
"""

from flowkit._lazy import lazy_getattr

__all__ = [
    "ActionBounds",
    "ChainSample",
    "GaussianPolicy",
    "NoisyFlowPolicy",
    "PPOBatch",
    "PPOSettings",
    "ReinFlowConfig",
    "ReinFlowTrainer",
    "RunningNorm",
    "bounded_sigma",
    "gae",
    "load_policy",
    "make_demonstrations",
    "ppo_loss",
    "ppo_update",
    "save_policy",
    "time_grid",
]

__getattr__ = lazy_getattr(
    __name__,
    {
        "ActionBounds": "policy",
        "ChainSample": "policy",
        "GaussianPolicy": "gaussian",
        "NoisyFlowPolicy": "policy",
        "PPOBatch": "ppo",
        "PPOSettings": "ppo",
        "ReinFlowConfig": "config",
        "ReinFlowTrainer": "trainer",
        "RunningNorm": "normalizer",
        "bounded_sigma": "policy",
        "gae": "advantages",
        "load_policy": "saved",
        "make_demonstrations": "demonstrations",
        "ppo_loss": "ppo",
        "ppo_update": "ppo",
        "save_policy": "saved",
        "time_grid": "policy",
    },
)
