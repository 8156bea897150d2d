"""resnet-limits: deep-depth limits of residual networks (SP = Cohen, Cont, Rossier, Xu, ICML 2021)."""

from resnet_limits.errors import DamagedRunError, UsageError
from resnet_limits.models import ResNet, ResNetParams, forward, init_params

__all__ = ["DamagedRunError", "ResNet", "ResNetParams", "UsageError", "forward", "init_params"]
__version__ = "0.1.0"
