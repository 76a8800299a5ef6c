"""Training on device (imports `nas.data`, `nas.ir`, `nas.compile`).

`train` fits one candidate, `train_population` K candidates of one shape at
once; both return `TrainResult`s with history, feedback and t_tr. Settings
validate themselves (`TrainConfigError`); the trainer refuses, before
compiling, a model whose output does not fit the data (`OutputShapeError`)
or whose estimated memory exceeds `TrainConfig.limits` (`ModelTooLargeError`).
`TrainConfig.finetune` (`FineTuneConfig`) trains a pre-trained body in one to
three steps with parts of it frozen (`nas.train.finetune`).
"""

from nas.train.config import FineTuneConfig, OptimizerConfig, ScheduleConfig, SizeLimits, TrainConfig
from nas.train.errors import ModelTooLargeError, OutputShapeError, TrainConfigError
from nas.train.guards import SizeEstimate, check_output_shape, check_size, estimate_size
from nas.train.loop import DIVERGED, DONE, DeviceSplits, TrainResult, evaluate, to_device, train, train_population
from nas.train.optim import learning_rate_multiplier, make_optimizer

__all__ = [
    "DIVERGED", "DONE", "DeviceSplits", "FineTuneConfig", "ModelTooLargeError", "OptimizerConfig", "OutputShapeError",
    "ScheduleConfig", "SizeEstimate", "SizeLimits", "TrainConfig", "TrainConfigError", "TrainResult",
    "check_output_shape", "check_size", "estimate_size", "evaluate", "learning_rate_multiplier",
    "make_optimizer", "to_device", "train", "train_population",
]
