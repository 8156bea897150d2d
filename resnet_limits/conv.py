"""The convolutional ResNet of SP eq. 9, as the authors' public code builds it (SP §3.2, App. D).

    h_{k+1} = ReLU(Delta_k * ReLU(A_k * h_k) + S_k(h_k))

with 3x3 bias-free convolutions A_k, Delta_k and the shortcut S_k the identity where the
block keeps the shape of h, else a 1x1 stride-2 bias-free convolution F_k (SP eq. 9 writes
h_k + F_k * h_k with F_k = 0 where the shape is kept; where it changes, the authors' code has
F_k * h_k alone). A stem 3x3 convolution to ``width`` channels + ReLU comes first; four
stages of widths width x (1, 2, 4, 8), the first block of stages 2-4 with stride 2 (in A_k
and F_k); then a 4x4 average pool and a linear head with bias. No batch normalisation.
Depth L = n1 + n2 + n3 + n4 blocks, one of the 16 configurations of :data:`CONFIGS`.

Images are NHWC and kernels HWIO (flax's layout). Padding is PyTorch's: one pixel on every
side for the 3x3 convolutions, none for the 1x1 (a stride-2 'SAME' would pad only below).
Initialisation is PyTorch's default (kaiming-uniform with a = sqrt(5)): every kernel and the
head's weights ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the head's bias likewise.

Parameters (``params["stage2"]`` etc.): a stage's entry block (the one that may change the
shape) has ``entry_A``, ``entry_Delta`` and, where the shape changes, ``entry_F``; its other
n - 1 blocks have ``rest_A``, ``rest_Delta`` stacked on a leading axis. ``params["stem"]`` is
the stem kernel, ``params["head"]`` the linear head (``kernel`` in x out, ``bias``).
:func:`block` is the block as a pure function of its kernels.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from resnet_limits.errors import UsageError

__all__ = [
    "CONFIGS",
    "IMAGE_HW",
    "NUM_CLASSES",
    "STAGE_MULTIPLIERS",
    "ConvResNet",
    "Stage",
    "block",
    "block_kernels",
    "blocks_per_stage",
    "conv2d",
    "conv_resnet",
    "init_conv_params",
    "param_count",
    "torch_bias_init",
    "torch_kernel_init",
]

# Blocks per stage (n1, n2, n3, n4) for each depth L = n1 + n2 + n3 + n4 (SP App. D,
# Fig. 11; the authors' public code, Net8 ... Net121).
CONFIGS: dict[int, tuple[int, int, int, int]] = {
    8: (2, 2, 2, 2), 11: (2, 3, 4, 2), 12: (2, 3, 5, 2), 14: (3, 3, 5, 3),
    16: (3, 4, 6, 3), 18: (3, 4, 8, 3), 20: (3, 4, 10, 3), 24: (3, 4, 14, 3),
    28: (3, 4, 18, 3), 33: (3, 4, 23, 3), 42: (3, 8, 28, 3), 50: (3, 8, 36, 3),
    65: (3, 8, 51, 3), 80: (4, 12, 60, 4), 100: (4, 18, 74, 4), 121: (4, 31, 82, 4),
}
STAGE_MULTIPLIERS = (1, 2, 4, 8)
IMAGE_HW = 32
NUM_CLASSES = 10

# PyTorch's default: kaiming_uniform_(a=sqrt(5)) = U(+-gain sqrt(3 / fan_in)) with
# gain = sqrt(2 / (1 + 5)), i.e. U(+-1/sqrt(fan_in)) = variance scaling 1/3, uniform.
torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
# the same for kernels stacked on a leading block axis (not part of fan_in)
_stacked_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform", batch_axis=(0,))


def torch_bias_init(fan_in: int):
    """PyTorch's default bias of a layer with ``fan_in`` inputs: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def conv2d(h: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """Bias-free convolution (NHWC images, HWIO kernel) with PyTorch's zero padding of
    (k - 1) / 2 pixels on every side (a stride-2 'SAME' would pad only after)."""
    p = (kernel.shape[0] - 1) // 2
    return jax.lax.conv_general_dilated(h, kernel, (stride, stride), ((p, p), (p, p)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def block(h: jax.Array, A: jax.Array, Delta: jax.Array, F: Optional[jax.Array] = None, stride: int = 1) -> jax.Array:
    """One block of SP eq. 9: h <- ReLU(Delta * ReLU(A * h) + S(h)), S(h) = h, or F * h
    (1x1, stride ``stride``) where the block changes the shape; A has stride ``stride``."""
    out = conv2d(jax.nn.relu(conv2d(h, A, stride)), Delta)
    return jax.nn.relu(out + (h if F is None else conv2d(h, F, stride)))


class Stage(nn.Module):
    """``n`` blocks of one width: the entry block (stride ``stride``, with F where the shape
    changes), then n - 1 equal blocks whose kernels are stacked (``rest_A``, ``rest_Delta``:
    leading axis n - 1). ``unroll``: a Python loop over them, else ``lax.scan``."""

    features: int
    n: int
    stride: int = 1
    unroll: bool = True

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        c_in, c = h.shape[-1], self.features
        A = self.param("entry_A", torch_kernel_init, (3, 3, c_in, c))
        Delta = self.param("entry_Delta", torch_kernel_init, (3, 3, c, c))
        F = self.param("entry_F", torch_kernel_init, (1, 1, c_in, c)) if self.stride != 1 or c_in != c else None
        h = block(h, A, Delta, F, self.stride)
        if self.n == 1:
            return h
        rest = (self.param("rest_A", _stacked_kernel_init, (self.n - 1, 3, 3, c, c)),
                self.param("rest_Delta", _stacked_kernel_init, (self.n - 1, 3, 3, c, c)))
        if self.unroll:
            for A, Delta in zip(*rest):
                h = block(h, A, Delta)
            return h
        return jax.lax.scan(lambda h, k: (block(h, *k), None), h, rest)[0]


class ConvResNet(nn.Module):
    """The network of SP eq. 9 (see the module docstring): images (B, 32, 32, 3) -> logits (B, 10).

    ``unroll`` (default) loops over each stage's stacked blocks in Python. ``unroll=False``
    scans over them (compile time independent of depth), but XLA:CPU then computes the
    convolutions' gradients about 100 times slower: inside a loop it leaves them in a
    non-canonical dimension order (measured with jax 0.10.2: 14.5 s against 0.12 s for the
    gradient of two 64-channel blocks on 8 images). Both compute the same function.
    """

    blocks: tuple[int, int, int, int]
    width: int = 64
    num_classes: int = NUM_CLASSES
    unroll: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.nn.relu(conv2d(x, self.param("stem", torch_kernel_init, (3, 3, x.shape[-1], self.width))))
        for s, (n, mult) in enumerate(zip(self.blocks, STAGE_MULTIPLIERS)):
            h = Stage(self.width * mult, n, 1 if s == 0 else 2, self.unroll, name=f"stage{s + 1}")(h)
        h = nn.avg_pool(h, (4, 4), strides=(4, 4)).reshape(h.shape[0], -1)
        fan_in = h.shape[-1]
        return nn.Dense(self.num_classes, kernel_init=torch_kernel_init, bias_init=torch_bias_init(fan_in),
                        name="head")(h)


def blocks_per_stage(depth: int) -> tuple[int, int, int, int]:
    """(n1, n2, n3, n4) of depth L; :class:`UsageError` unless L is one of :data:`CONFIGS`."""
    if depth not in CONFIGS:
        raise UsageError(f"depth {depth} is not a convolutional configuration; choose from "
                         f"{', '.join(map(str, CONFIGS))}")
    return CONFIGS[depth]


def conv_resnet(depth: int, width: int = 64, unroll: bool = True) -> ConvResNet:
    """The SP eq. 9 network of depth L (``width`` channels in stage 1; the paper's is 64)."""
    if width < 1:
        raise UsageError(f"width must be >= 1, got {width}")
    return ConvResNet(blocks_per_stage(depth), width, unroll=unroll)


def _dummy_input() -> jax.Array:
    return jnp.zeros((1, IMAGE_HW, IMAGE_HW, 3), jnp.float32)


def init_conv_params(key: jax.Array, depth: int, width: int = 64) -> dict[str, Any]:
    """PyTorch-default initial parameters of :func:`conv_resnet` (a pytree of float32 arrays).

    Every kernel, the head's weights and its bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), with
    fan_in = kh kw c_in for a convolution and the head's input width for the head: the law of
    the modules' own initialisers, drawn as one uniform vector cut into the parameter tree
    (one random-number program instead of one per tensor: seconds less to compile on CPU).
    """
    conv_resnet(depth, width)  # validates before tracing
    return _init(key, depth=depth, width=width)


def _fan_in(path, shape, head_in: int) -> int:
    name = path[-1].key
    if name == "bias":
        return head_in
    return shape[0] if len(shape) == 2 else math.prod(shape[-4:-1])  # (in, out) or (..., kh, kw, in, out)


@functools.partial(jax.jit, static_argnames=("depth", "width"))
def _init(key: jax.Array, *, depth: int, width: int) -> dict[str, Any]:
    shapes = jax.eval_shape(conv_resnet(depth, width).init, jax.random.PRNGKey(0), _dummy_input())["params"]
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    head_in = shapes["head"]["kernel"].shape[0]
    sizes = [math.prod(leaf.shape) for _, leaf in leaves]
    u = jax.random.uniform(key, (sum(sizes),), jnp.float32, -1.0, 1.0)
    parts = jnp.split(u, list(itertools.accumulate(sizes))[:-1])
    out = [p.reshape(leaf.shape) / math.sqrt(_fan_in(path, leaf.shape, head_in)) for p, (path, leaf) in zip(parts, leaves)]
    return jax.tree.unflatten(treedef, out)


def param_count(depth: int, width: int = 64) -> int:
    """Number of trainable parameters, from shapes only (``jax.eval_shape``, no allocation)."""
    model = conv_resnet(depth, width)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), _dummy_input())
    return sum(math.prod(a.shape) for a in jax.tree.leaves(shapes))


def block_kernels(params: dict[str, Any], image_hw: int = IMAGE_HW) -> list[dict[str, Any]]:
    """The blocks' kernels in network order, for their spectral norms (SP §3.2, Table 1).

    One dict per block k = 0..L-1: ``A``, ``Delta`` (HWIO kernels), ``F`` (the 1x1 shortcut
    kernel, or None), ``stage`` (1..4), ``stride``, ``input_hw`` (spatial size of the block's
    input: A_k and F_k act on it, as in the authors' code) and ``output_hw`` (of its output,
    which Delta_k acts on). The kernels after a stage's entry are views into ``rest_A`` /
    ``rest_Delta`` (stacked: leading axis n - 1, the form a batched norm wants).
    """
    out: list[dict[str, Any]] = []
    hw = image_hw
    for s in range(1, len(STAGE_MULTIPLIERS) + 1):
        stage = params[f"stage{s}"]
        stride = 1 if s == 1 else 2
        out.append({
            "A": stage["entry_A"], "Delta": stage["entry_Delta"], "F": stage.get("entry_F"), "stage": s,
            "stride": stride, "input_hw": (hw, hw), "output_hw": (hw // stride, hw // stride),
        })
        hw //= stride
        if "rest_A" in stage:
            A, D = stage["rest_A"], stage["rest_Delta"]
            out.extend({"A": A[i], "Delta": D[i], "F": None, "stage": s, "stride": 1,
                        "input_hw": (hw, hw), "output_hw": (hw, hw)} for i in range(A.shape[0]))
    return out
