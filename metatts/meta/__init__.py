"""Meta-learning over a dict of parameters: one inner loop, and MAML / FOMAML / Reptile on top."""

from metatts.meta.algorithms import (
    ALGORITHMS,
    Algorithm,
    MetaGradient,
    Task,
    TaskGradient,
    meta_gradient,
    task_gradient,
    write_grads,
)
from metatts.meta.inner_loop import InnerConfig, InnerResult, inner_loop, loss_fn
from metatts.meta.meta_sgd import InnerLearningRates
from metatts.meta.params import adapted_names, initial_params, load_params

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "InnerConfig",
    "InnerLearningRates",
    "InnerResult",
    "MetaGradient",
    "Task",
    "TaskGradient",
    "adapted_names",
    "initial_params",
    "inner_loop",
    "load_params",
    "loss_fn",
    "meta_gradient",
    "task_gradient",
    "write_grads",
]
