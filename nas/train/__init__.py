"""Training on device (imports `nas.data`, `nas.ir`, `nas.compile`).

`train` fits one candidate, `train_population` K candidates of one shape at
once; both return `TrainResult`s with history, feedback and t_tr.
"""

from nas.train.config import OptimizerConfig, ScheduleConfig, TrainConfig
from nas.train.loop import DIVERGED, DONE, DeviceSplits, TrainResult, evaluate, to_device, train, train_population
from nas.train.optim import learning_rate_multiplier, make_optimizer

__all__ = [
    "DIVERGED", "DONE", "DeviceSplits", "OptimizerConfig", "ScheduleConfig", "TrainConfig",
    "TrainResult", "evaluate", "learning_rate_multiplier", "make_optimizer", "to_device",
    "train", "train_population",
]
