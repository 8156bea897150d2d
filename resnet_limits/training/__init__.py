"""Trainers (layer 2): ``fc`` trains the fully-connected ResNet of SP eq. 1, ``conv`` the
convolutional ResNet of SP eq. 9 on CIFAR-10 (settings of SP App. A and the authors' public code).

The public names of :mod:`resnet_limits.training.fc` are re-exported here, so
``from resnet_limits.training import TrainConfig, train_seeds`` keeps working.
"""

from resnet_limits.training.conv import (
    ConvResult,
    ConvTrainConfig,
    evaluate_conv,
    make_conv_optimizer,
    train_conv,
)
from resnet_limits.training.fc import (
    OPTIMIZERS,
    PARAMETRIZATIONS,
    TrainConfig,
    TrainResult,
    initial_params,
    make_optimizer,
    seed_keys,
    train_seeds,
)

__all__ = [
    "ConvResult",
    "ConvTrainConfig",
    "evaluate_conv",
    "make_conv_optimizer",
    "train_conv",
    "OPTIMIZERS", "PARAMETRIZATIONS", "TrainConfig", "initial_params", "TrainResult", "make_optimizer", "seed_keys", "train_seeds"]
