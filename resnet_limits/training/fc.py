"""Training S seeds of one depth at once (SP §3.1, App. A; the authors' public code): one jitted, vmapped program.

Constant-step optax SGD or Adam on the mean-squared error, minibatches reshuffled every
epoch, early stop once an epoch's mean training loss is below epsilon, at most T_max
updates. Each seed has its own initialisation and shuffles; a seed that has stopped
(converged, capped or diverged) keeps its weights while the others go on. A non-finite
loss marks the seed diverged; its last finite weights are kept.

With several devices the seed axis is sharded across them (``jax.sharding``); results are
the same as on one device because every seed's randomness comes from its own key.

Depth parametrisations (:class:`TrainConfig`): delta learned (SP) or fixed to L^{-a}
and never updated, with the learning rate (and Adam's epsilon) scaled with depth from a
reference depth; the learning rate may also be scaled with the width (muP-style).

Two engines compute the same numbers (to float32 round-off):

- ``bucket`` (the default): the weights are stacked in a capacity C >= L (:func:`depth_capacity`:
  64, 256, 1024, then powers of two) and the layer loop runs exactly L layers with a dynamic trip
  count (:func:`~resnet_limits.models.forward_to_depth`, backward pass by AA eq. 5.3). The depth,
  the data, the learning rates, epsilon, Adam's epsilon and T_max are arguments of programs cached per graph
  (activation, delta mode, optimiser, batch size, trained or fixed delta, smooth initialisation
  or not), so a whole depth grid compiles one program
  per capacity, and several learning rates train in one vmapped program (``lrs``).
- ``static``: one program per depth with the depth and data baked in (the original trainer),
  kept as the reference the tests and ``benchmarks/train_throughput.py`` compare against.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm import tqdm

from resnet_limits.data import Dataset
from resnet_limits.scaling.denoised import pad_depth
from resnet_limits.errors import UsageError
from resnet_limits.runtime import xla_flag_given
from resnet_limits.models import (
    DELTA_MODES,
    depth_capacity,
    INITS,
    ResNetParams,
    forward,
    forward_to_depth,
    get_activation,
    init_params,
    init_scales,
    layer_weights,
    mse,
    pad_params,
)

__all__ = [
    "ENGINES",
    "OPTIMIZERS",
    "PARAMETRIZATIONS",
    "TrainConfig",
    "TrainResult",
    "depth_capacity",
    "initial_params",
    "make_optimizer",
    "seed_keys",
    "train_seeds",
]

OPTIMIZERS = ("adam", "sgd")
ENGINES = ("bucket", "static")
#: How delta is set: trained (SP, the default) or fixed by hand to L^{-a} (beyond the papers).
PARAMETRIZATIONS = ("learned-delta", "fixed")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (SP App. A, Table 2), and the depth parametrisation.

    ``parametrization``: ``"learned-delta"`` (SP: delta is a trained weight, initialised by
    :func:`~resnet_limits.models.init_params`) or ``"fixed"``: delta_k = L^{-a} in every layer with
    a = ``branch_exponent`` (a = 1/2: Depth-muP, Yang et al. 2023, Bordelon et al. 2023; a = 1: the
    neural-ODE / CompleteP scaling, Dey et al. 2025), never trained (its gradient is sent to zero
    by the optimiser, :func:`make_optimizer`).

    Learning rate against depth. With ``ref_depth`` L0 given, a run of depth L trains with
    eta(L) = ``lr`` (L / L0)^e (:meth:`lr_at`), e = ``lr_depth_exponent`` when given, else the
    rule of the parametrisation (:meth:`depth_exponent`), derived from the requirement that each
    layer's update moves the output by O(1/L), so that the L layers together move it by O(1):

    - a weight update dA_k moves h_L by about delta_k J_{k+1} diag(sigma') dA_k h_k, i.e. by
      O(L^{-a} |dA_k|);
    - Adam normalises the gradient: every entry moves by about eta whatever the gradient's
      size, so |dA_k| = O(eta) and the output moves by O(eta L^{-a}); O(1/L) needs
      eta(L) ~ L^{a-1};
    - SGD moves by eta times the gradient, and dloss/dA_k itself carries the factor delta_k =
      L^{-a} (the same Jacobian, AA eq. 5.3): |dA_k| = O(eta L^{-a}), the output moves by
      O(eta L^{-2a}), and O(1/L) needs eta(L) ~ L^{2a-1}.

    So a = 1/2: Adam eta ~ L^{-1/2}, SGD constant (Depth-muP); a = 1: Adam constant, SGD eta ~ L
    (CompleteP). ``learned-delta`` has no rule (e = 0 unless ``lr_depth_exponent`` is given).
    Without ``ref_depth`` the learning rate is ``lr`` at every depth. :class:`TrainResult.lr`
    holds the rates used (a sweep records them per depth).

    Adam's epsilon against depth. Adam divides by sqrt(v) + eps, and under the fixed
    parametrisation sqrt(v) ~ |dloss/dA_k| = O(L^{-a}) (the factor delta_k above): a constant eps
    ends up dominating the denominator at large depth and Adam turns into SGD with a step eta/eps.
    So with ``ref_depth`` and ``adam_eps_depth`` (the default) the fixed parametrisation trains
    with eps(L) = ``adam_eps`` (L / L0)^{-a} (:meth:`adam_eps_at`; CompleteP, Dey et al. 2025,
    found this needed), else with ``adam_eps`` at every depth. :class:`TrainResult.adam_eps`
    holds the epsilons used.

    Learning rate against width (``ref_width`` d0; the muP rule of the hidden weights, Yang et al.
    2022, Tensor Programs V, Table 3). Every A_k is a d x d hidden weight and the data have unit
    norm (SP §3.1), so |h_k| = O(1) and the residual's pull-back u_k = O(1) in d:

    - Adam moves every entry of A_k by about eta, dA_k ~ eta sign(u_k) sign(h_k)^T, so
      |dA_k h_k| ~ eta sqrt(d) |h_k|_1 ~ eta d: eta(d) = ``lr`` d0 / d keeps it O(1);
    - SGD moves A_k by eta delta_k u_k h_k^T, so dA_k h_k = eta delta_k u_k |h_k|^2 is O(eta) whatever
      d: no factor (eta(d) = ``lr``; muP's SGD rate of hidden weights is constant in the width too).

    The width factor multiplies the depth rule's: eta(L, d) = ``lr`` (L / L0)^e (d0 / d)
    (:meth:`lr_at`).
    """

    activation: str = "tanh"
    delta_mode: str = "shared"
    optimizer: str = "adam"
    lr: float = 0.01
    batch_size: int = 32
    epochs: int = 5
    max_updates: int = 160
    epsilon: float = 0.01
    init: str = "xavier-depth"
    init_scale: float = 0.01
    parametrization: str = "learned-delta"
    branch_exponent: Optional[float] = None
    ref_depth: Optional[float] = None
    lr_depth_exponent: Optional[float] = None
    adam_eps: float = 1e-8
    adam_eps_depth: bool = True
    ref_width: Optional[int] = None

    @property
    def fixed_delta(self) -> bool:
        """delta is fixed to L^{-a} and not trained."""
        return self.parametrization == "fixed"

    @property
    def delta_exponent(self) -> Optional[float]:
        """a of delta_k = L^{-a} under the fixed parametrisation, else None (delta is learned)."""
        return float(self.branch_exponent) if self.fixed_delta else None

    def depth_exponent(self) -> float:
        """e of eta(L) = lr (L / L0)^e: ``lr_depth_exponent``, else a - 1 (Adam) / 2a - 1 (SGD)
        under the fixed parametrisation, else 0 (class docstring)."""
        if self.lr_depth_exponent is not None:
            return float(self.lr_depth_exponent)
        if not self.fixed_delta:
            return 0.0
        a = float(self.branch_exponent)
        return a - 1.0 if self.optimizer == "adam" else 2.0 * a - 1.0

    def width_factor(self, width: Optional[int] = None) -> float:
        """The width rule's factor of the learning rate (class docstring): d0 / d for Adam, 1 for SGD,
        1 without ``ref_width``. ``width`` d is needed when ``ref_width`` is given."""
        if self.ref_width is None or self.optimizer != "adam":
            return 1.0
        if width is None:
            raise ValueError("the width rule eta d0/d (ref_width) needs the width d of the network")
        return float(self.ref_width) / float(width)

    def lr_factor(self, depth: int, width: Optional[int] = None) -> float:
        """(L / L0)^e (1 without ``ref_depth``) times :meth:`width_factor` (1 without ``ref_width``)."""
        factor = 1.0 if self.ref_depth is None else (depth / float(self.ref_depth)) ** self.depth_exponent()
        return factor * self.width_factor(width)

    def lr_at(self, depth: int, width: Optional[int] = None) -> float:
        """The learning rate a run of depth ``depth`` (and width ``width``) trains with:
        lr (L / L0)^e (d0 / d)."""
        return self.lr * self.lr_factor(depth, width)

    @property
    def adam_eps_scaled(self) -> bool:
        """Adam's epsilon follows the per-layer gradient, eps (L / L0)^{-a} (class docstring)."""
        return self.fixed_delta and self.ref_depth is not None and self.adam_eps_depth

    def adam_eps_at(self, depth: int) -> Optional[float]:
        """The epsilon of Adam's denominator at depth ``depth``: ``adam_eps`` (L / L0)^{-a} under the
        fixed parametrisation with ``ref_depth`` and ``adam_eps_depth``, else ``adam_eps``; None
        for SGD (it has none)."""
        if self.optimizer != "adam":
            return None
        if not self.adam_eps_scaled:
            return float(self.adam_eps)
        return float(self.adam_eps) * (depth / float(self.ref_depth)) ** -float(self.branch_exponent)

    def validate(self, n_train: Optional[int] = None) -> None:
        """Raise :class:`UsageError` with one clear line for any bad value."""
        try:
            get_activation(self.activation)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if self.delta_mode not in DELTA_MODES:
            raise UsageError(f"unknown delta mode {self.delta_mode!r}; choose from {', '.join(DELTA_MODES)}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        if self.init not in INITS:
            raise UsageError(f"unknown init {self.init!r}; choose from {', '.join(INITS)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"learning rate must be positive, got {self.lr}")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {self.batch_size}")
        if n_train is not None and self.batch_size > n_train:
            raise UsageError(f"batch size {self.batch_size} is larger than the training set ({n_train} points)")
        if self.epochs < 1:
            raise UsageError(f"epochs must be >= 1, got {self.epochs}")
        if self.max_updates < 1:
            raise UsageError(f"max updates must be >= 1, got {self.max_updates}")
        if not self.epsilon >= 0:
            raise UsageError(f"epsilon must be >= 0, got {self.epsilon}")
        self._validate_parametrization()

    def _validate_parametrization(self) -> None:
        if self.parametrization not in PARAMETRIZATIONS:
            raise UsageError(f"unknown parametrization {self.parametrization!r}; "
                             f"choose from {', '.join(PARAMETRIZATIONS)}")
        a = self.branch_exponent
        if self.fixed_delta:
            if a is None:
                raise UsageError("the fixed parametrization needs a branch exponent a (delta = L^-a)")
            if not (math.isfinite(a) and a >= 0):
                raise UsageError(f"branch exponent must be a finite number >= 0, got {a}")
            if self.delta_mode == "none":
                raise UsageError("the fixed parametrization sets delta = L^-a; delta mode 'none' has no delta")
        elif a is not None:
            raise UsageError("a branch exponent is a setting of the fixed parametrization only")
        if self.ref_depth is not None and not (math.isfinite(self.ref_depth) and self.ref_depth >= 1):
            raise UsageError(f"reference depth must be >= 1, got {self.ref_depth}")
        e = self.lr_depth_exponent
        if e is not None and not math.isfinite(e):
            raise UsageError(f"learning-rate depth exponent must be finite, got {e}")
        if e is not None and self.ref_depth is None:
            raise UsageError("a learning-rate depth exponent needs a reference depth L0 (eta (L/L0)^e)")
        if self.ref_depth is not None and e is None and not self.fixed_delta:
            raise UsageError("learned-delta has no learning-rate depth rule: give a learning-rate depth "
                             "exponent with the reference depth")
        if not (isinstance(self.adam_eps, (int, float)) and math.isfinite(self.adam_eps) and self.adam_eps > 0):
            raise UsageError(f"Adam's epsilon must be a positive number, got {self.adam_eps}")
        w = self.ref_width
        if w is not None and not (isinstance(w, int) and not isinstance(w, bool) and w >= 1):
            raise UsageError(f"reference width must be an integer >= 1, got {w}")


class TrainResult(NamedTuple):
    """Per-seed outcome of :func:`train_seeds` (leading axis: seeds), as numpy arrays."""

    params: ResNetParams
    loss_curve: np.ndarray  # (S, T): loss before each update; NaN where the seed did not update
    updates: np.ndarray  # (S,) updates performed
    converged: np.ndarray  # (S,) an epoch's mean loss fell below epsilon
    diverged: np.ndarray  # (S,) a non-finite loss was met
    train_loss: np.ndarray  # (S,) final loss on the whole training set
    test_loss: np.ndarray  # (S,) final loss on the test set
    lr: np.ndarray  # (S,) the learning rate each run trained with (TrainConfig.lr_at, or lrs scaled alike)
    adam_eps: Optional[np.ndarray] = None  # (S,) Adam's epsilon of each run (TrainConfig.adam_eps_at); None: SGD


class _State(NamedTuple):
    params: ResNetParams
    opt_state: optax.OptState
    active: jax.Array  # bool: still training
    converged: jax.Array
    diverged: jax.Array
    updates: jax.Array  # int32


def make_optimizer(name: str, lr, *, fixed_delta: bool = False, eps=1e-8) -> optax.GradientTransformation:
    """Constant-step optax optimiser: ``adam`` (the authors' code default) or ``sgd`` (SP §3.1).

    ``lr`` may be a traced scalar (one learning rate per vmapped run). ``eps``: Adam's epsilon
    (:meth:`TrainConfig.adam_eps_at`; optax's default 1e-8; may be traced; SGD ignores it; not
    the early stop's ``epsilon``). ``fixed_delta``: the ``delta`` leaf of
    :class:`~resnet_limits.models.ResNetParams` gets no update (``optax.multi_transform`` with
    ``optax.set_to_zero``; the fixed parametrisation).
    """
    if name == "adam":
        opt = optax.adam(lr, eps=eps)
    elif name == "sgd":
        opt = optax.sgd(lr)
    else:
        raise UsageError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    if not fixed_delta:
        return opt
    labels = lambda p: ResNetParams("train", "train", None if p.delta is None else "fixed")  # noqa: E731
    return optax.multi_transform({"train": opt, "fixed": optax.set_to_zero()}, labels)


def seed_keys(base_seed: int, depth: int, n_seeds: int) -> jax.Array:
    """Key of seed s at depth L: fold_in(fold_in(PRNGKey(base), L), s), independent of n_seeds."""
    root = jax.random.fold_in(jax.random.PRNGKey(base_seed), depth)
    return jax.vmap(lambda s: jax.random.fold_in(root, s))(jnp.arange(n_seeds))


def _loss(params: ResNetParams, x, y, cfg: TrainConfig):
    return mse(forward(params, x, activation=cfg.activation, delta_mode=cfg.delta_mode), y)


def initial_params(key: jax.Array, depth: int, width: int, cfg: TrainConfig) -> ResNetParams:
    """The weights the run of ``key`` starts from (both engines): ``init_params(fold_in(key, 0), ...)``
    with the initialisation, delta mode and (fixed parametrisation) delta = L^{-a} of ``cfg``."""
    return init_params(
        jax.random.fold_in(key, 0), depth, width, init=cfg.init,
        delta_mode=cfg.delta_mode, scale=cfg.init_scale, branch_exponent=cfg.delta_exponent,
    )


def _init_state(key, depth: int, width: int, cfg: TrainConfig, opt) -> _State:
    return _fresh_state(initial_params(key, depth, width, cfg), opt)


def _fresh_state(params: ResNetParams, opt: optax.GradientTransformation) -> _State:
    """Optimiser state and flags of a run about to start."""
    false = jnp.zeros((), bool)
    return _State(params, opt.init(params), jnp.ones((), bool), false, false, jnp.zeros((), jnp.int32))


def _epoch(state: _State, key, epoch, data: Dataset, cfg: TrainConfig, opt):
    """One epoch of one seed of the static engine (depth and data are constants of the program)."""
    loss = lambda p, x, y: _loss(p, x, y, cfg)  # noqa: E731
    batches = _epoch_batches(key, epoch, data.x_train.shape[0], cfg.batch_size)
    return _epoch_steps(state, batches, data.x_train, data.y_train, loss, opt, cfg.max_updates, cfg.epsilon)


def _epoch_batches(key, epoch, n: int, batch_size: int) -> jax.Array:
    """Minibatch indices (n // B, B) of one seed's epoch: a fresh permutation, the last partial batch dropped."""
    n_batches = n // batch_size  # fixed shapes
    perm = jax.random.permutation(jax.random.fold_in(jax.random.fold_in(key, 1), epoch), n)
    return perm[: n_batches * batch_size].reshape(n_batches, batch_size)


def _epoch_steps(state: _State, batches, x, y, loss_fn, opt, max_updates, epsilon):
    """One epoch of one seed: scan over the minibatches ``batches``, then the early-stop test.

    ``loss_fn(params, x_batch, y_batch)``; ``max_updates`` and ``epsilon`` may be traced.
    """
    grad_fn = jax.value_and_grad(loss_fn)

    def update(st: _State, idx):
        loss, grads = grad_fn(st.params, x[idx], y[idx])
        finite = jnp.isfinite(loss)
        do = st.active & finite & (st.updates < max_updates)
        upd, new_opt = opt.update(grads, st.opt_state, st.params)
        new_params = optax.apply_updates(st.params, upd)
        keep = lambda new, old: jnp.where(do, new, old)
        st = _State(
            jax.tree.map(keep, new_params, st.params),
            jax.tree.map(keep, new_opt, st.opt_state),
            st.active & finite & (st.updates + do < max_updates),
            st.converged,
            st.diverged | (st.active & ~finite),
            st.updates + do.astype(jnp.int32),
        )
        return st, jnp.where(do, loss, jnp.nan)

    was_active = state.active
    state, losses = jax.lax.scan(update, state, batches)
    done = ~jnp.isnan(losses)
    mean = jnp.sum(jnp.where(done, losses, 0.0)) / jnp.maximum(done.sum(), 1)
    conv = was_active & ~state.diverged & (done.sum() > 0) & (mean < epsilon)
    state = state._replace(active=state.active & ~conv, converged=state.converged | conv)
    return state, losses


def _eval(params: ResNetParams, data: Dataset, cfg: TrainConfig):
    return _loss(params, data.x_train, data.y_train, cfg), _loss(params, data.x_test, data.y_test, cfg)


def _host(a) -> np.ndarray:
    """A (seed-sharded) result as one numpy array; with several JAX processes
    (``jax.distributed``) the shards of the other processes are gathered (every process calls this
    in the same order)."""
    if not isinstance(a, jax.Array) or a.is_fully_addressable or a.is_fully_replicated:
        return np.asarray(a)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(a, tiled=True))


def _seed_sharding(n_seeds: int):
    """A NamedSharding of the seed axis over all devices, or None on one device."""
    devices = jax.devices()
    if len(devices) < 2:
        return None
    mesh = Mesh(np.array(devices), ("seeds",))
    return NamedSharding(mesh, PartitionSpec("seeds"))


class _Engine(NamedTuple):
    """The three programs of one run, closed over everything but the state and the keys."""

    init: Callable  # keys -> _State
    epoch: Callable  # (state, keys, epoch) -> (state, losses (S, n_batches))
    evaluate: Callable  # params -> (train_loss (S,), test_loss (S,))
    trim: Callable  # params as trained -> params of depth L


def _optimizer_eps(cfg: TrainConfig, depth: int) -> float:
    """Adam's epsilon at ``depth`` (:meth:`TrainConfig.adam_eps_at`; SGD: ``adam_eps``, unused)."""
    eps = cfg.adam_eps_at(depth)
    return float(cfg.adam_eps) if eps is None else eps


def _static_engine(depth: int, data: Dataset, cfg: TrainConfig) -> _Engine:
    """The original trainer: depth, data, learning rate and Adam's epsilon are constants; one compile per call."""
    width = data.x_train.shape[1]
    opt = make_optimizer(cfg.optimizer, cfg.lr_at(depth, width), fixed_delta=cfg.fixed_delta,
                         eps=_optimizer_eps(cfg, depth))
    init = jax.jit(jax.vmap(lambda k: _init_state(k, depth, width, cfg, opt)))
    epoch_fn = jax.jit(
        jax.vmap(lambda st, k, e: _epoch(st, k, e, data, cfg, opt), in_axes=(0, 0, None)),
        donate_argnums=0,
    )
    evaluate = jax.jit(jax.vmap(lambda p: _eval(p, data, cfg)))
    return _Engine(init, epoch_fn, evaluate, lambda p: p)


class _Graph(NamedTuple):
    """The :class:`TrainConfig` fields that change the compiled graph of the bucket engine."""

    activation: str
    delta_mode: str
    optimizer: str
    batch_size: int
    fixed_delta: bool = False  # delta not trained (its optimiser state differs)
    smooth_init: bool = False  # weights drawn as Fourier coefficients (init "smooth")


class _Programs(NamedTuple):
    init: Callable
    shuffle: Callable
    epoch: Callable
    evaluate: Callable


# XLA:CPU backend optimisation level 1 (LLVM -O1): compiles the random draws ~4x and the
# epoch ~1.3x faster than the default, runs the epoch as fast (benchmarks/train_throughput.py),
# and draws bit-identical weights (tests/test_training.py checks them bit for bit). A level set in
# XLA_FLAGS wins (the test run compiles everything at level 0).
_LIGHT = {"xla_backend_optimization_level": 1}


def _light() -> dict:
    """:data:`_LIGHT`, or nothing where ``XLA_FLAGS`` sets the optimisation level itself."""
    return {} if xla_flag_given("xla_backend_optimization_level") else _LIGHT


def _init_padded(key, depth, s_A, s_b, delta0, *, capacity: int, width: int, graph: _Graph) -> _State:
    """The weights ``init_params(fold_in(key, 0), L, d)`` draws, stacked in ``capacity``, zero after L.

    ``s_A``, ``s_b`` (:func:`~resnet_limits.models.init_scales`) and ``delta0`` (1/L, or L^{-a}
    when delta is fixed) come from the host so they round as in ``init_params``. With partitionable
    threefry (JAX's default, checked by the caller) ``normal(k, (C, ...))[:L]`` equals
    ``normal(k, (L, ...))``; the ``smooth`` initialisation draws its Fourier coefficients as
    ``init_params`` does and evaluates them at t_k = k/L for k < C.
    """
    C, d = capacity, width
    kA, kb, kd = jax.random.split(jax.random.fold_in(key, 0), 3)
    live = jnp.arange(C) < depth
    tk = jnp.arange(C, dtype=jnp.float32) / depth.astype(jnp.float32)
    A_all, b_all = layer_weights(kA, kb, tk, d, s_A, s_b, smooth=graph.smooth_init)
    A = jnp.where(live[:, None, None], A_all, 0.0)
    b = jnp.where(live[:, None], b_all, 0.0)
    delta = None
    if graph.delta_mode == "shared":
        delta = delta0
    elif graph.delta_mode == "per-layer" and graph.fixed_delta:
        delta = jnp.where(live, delta0, 0.0)
    elif graph.delta_mode == "per-layer":
        delta = jnp.where(live, jax.random.normal(kd, (C,)) / depth.astype(jnp.float32), 0.0)
    opt = make_optimizer(graph.optimizer, 1.0, fixed_delta=graph.fixed_delta)
    return _fresh_state(ResNetParams(A, b, delta), opt)  # lr-free state


@functools.lru_cache(maxsize=None)
def _bucket_programs(graph: _Graph) -> _Programs:
    """The jitted programs of one graph, cached for the process; jit caches one per capacity/shape.

    Depth, data, learning rates (one per run), T_max, the early stop's epsilon and Adam's
    epsilon (one per call: it depends on the depth only, :meth:`TrainConfig.adam_eps_at`) are
    arguments, so one program serves every depth of a capacity with or without the epsilon rule.
    The epoch's shuffle is a program of its own, shared by all capacities.
    """

    def loss(params, x, y, depth):
        pred = forward_to_depth(params, x, depth, activation=graph.activation, delta_mode=graph.delta_mode)
        return mse(pred, y)

    def epoch(state, batches, x, y, depth, lr, max_updates, epsilon, adam_eps):
        opt = make_optimizer(graph.optimizer, lr, fixed_delta=graph.fixed_delta, eps=adam_eps)
        loss_fn = lambda p, xb, yb: loss(p, xb, yb, depth)  # noqa: E731
        return _epoch_steps(state, batches, x, y, loss_fn, opt, max_updates, epsilon)

    def shuffle(keys, e, n):
        return jax.vmap(lambda k: _epoch_batches(k, e, n, graph.batch_size))(keys)

    def evaluate(params, depth, x_train, y_train, x_test, y_test):
        return loss(params, x_train, y_train, depth), loss(params, x_test, y_test, depth)

    def init(keys, depth, s_A, s_b, delta0, capacity, width):
        one = functools.partial(_init_padded, capacity=capacity, width=width, graph=graph)
        return jax.vmap(one, in_axes=(0, None, None, None, None))(keys, depth, s_A, s_b, delta0)

    light = _light()
    return _Programs(
        jax.jit(init, static_argnames=("capacity", "width"), compiler_options=light),
        jax.jit(shuffle, static_argnames=("n",), compiler_options=light),
        jax.jit(jax.vmap(epoch, in_axes=(0, 0, None, None, None, 0, None, None, None)), donate_argnums=0,
                compiler_options=light),
        jax.jit(jax.vmap(evaluate, in_axes=(0, None, None, None, None, None)), compiler_options=light),
    )


def _bucket_engine(depth: int, data: Dataset, cfg: TrainConfig, lrs: jax.Array, sharding,
                   initial: Optional[ResNetParams] = None) -> _Engine:
    """Programs shared by every depth up to :func:`depth_capacity` (and every lr, epsilon, Adam
    epsilon, T_max)."""
    progs = _bucket_programs(_Graph(cfg.activation, cfg.delta_mode, cfg.optimizer, cfg.batch_size,
                                    cfg.fixed_delta, cfg.init == "smooth"))
    capacity, width = depth_capacity(depth), data.x_train.shape[1]
    arrays = (data.x_train, data.y_train, data.x_test, data.y_test)
    if sharding is not None:  # data replicated on every device, learning rates split like the seeds
        arrays = jax.device_put(arrays, NamedSharding(sharding.mesh, PartitionSpec()))
        lrs = jax.device_put(lrs, sharding)
    x_train, y_train, x_test, y_test = arrays
    L = jnp.int32(depth)
    max_updates, epsilon = jnp.int32(cfg.max_updates), jnp.float32(cfg.epsilon)
    adam_eps = jnp.float32(_optimizer_eps(cfg, depth))  # traced: eps(L) needs no program of its own
    s_A, s_b = init_scales(depth, width, cfg.init, cfg.init_scale)
    a = cfg.delta_exponent
    delta0 = 1.0 / depth if a is None else float(depth) ** -a

    def init(keys):
        if initial is not None:  # given weights (a nested ladder), stacked in the capacity on the host
            opt = make_optimizer(cfg.optimizer, 1.0, fixed_delta=cfg.fixed_delta)
            state = jax.jit(jax.vmap(lambda p: _fresh_state(p, opt)))(pad_depth(initial, capacity))
            return state if sharding is None else jax.device_put(state, sharding)
        if jax.config.jax_threefry_partitionable:
            return progs.init(keys, L, np.float32(s_A), np.float32(s_b), np.float32(delta0),
                              capacity=capacity, width=width)
        def one(k):  # other threefry modes: draw at depth L (one small compile), then pad
            opt = make_optimizer(cfg.optimizer, 1.0, fixed_delta=cfg.fixed_delta)
            return _fresh_state(pad_params(initial_params(k, depth, width, cfg), capacity), opt)
        return jax.jit(jax.vmap(one))(keys)

    def trim(p: ResNetParams) -> ResNetParams:  # on the host: a device slice would compile per depth
        delta = np.asarray(p.delta)[:, :depth] if cfg.delta_mode == "per-layer" else p.delta
        return ResNetParams(np.asarray(p.A)[:, :depth], np.asarray(p.b)[:, :depth], delta)

    return _Engine(
        init,
        lambda st, keys, e: progs.epoch(st, progs.shuffle(keys, e, n=x_train.shape[0]), x_train, y_train,
                                        L, lrs, max_updates, epsilon, adam_eps),
        lambda p: progs.evaluate(p, L, x_train, y_train, x_test, y_test),
        trim,
    )


def _learning_rates(lrs, n_seeds: int, cfg: TrainConfig, depth: int, width: Optional[int] = None) -> np.ndarray:
    """(S,) float32 learning rates at ``depth`` (and ``width``): ``lrs`` checked and scaled by
    :meth:`TrainConfig.lr_factor`, or :meth:`TrainConfig.lr_at` for every run."""
    if lrs is None:
        return np.full((n_seeds,), cfg.lr_at(depth, width), np.float32)
    lrs = np.asarray(lrs, np.float64)
    if lrs.shape != (n_seeds,):
        raise UsageError(f"lrs must hold one learning rate per key ({n_seeds}), got shape {lrs.shape}")
    if not np.all(np.isfinite(lrs) & (lrs > 0)):
        raise UsageError(f"learning rates must be positive, got {lrs.tolist()}")
    factor = cfg.lr_factor(depth, width)
    return (lrs if factor == 1.0 else lrs * factor).astype(np.float32)


def _start(keys: jax.Array, depth: int, data: Dataset, cfg: TrainConfig, lrs, engine: str,
           initial: Optional[ResNetParams] = None) -> tuple[_Engine, jax.Array]:
    """Check the inputs, pad the seed axis to a multiple of the devices and shard it; the engine.

    Returns the engine and the padded keys (padded runs repeat the last key and learning rate;
    their results are dropped).
    """
    if depth < 1:
        raise UsageError(f"depth must be >= 1, got {depth}")
    cfg.validate(data.x_train.shape[0])
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if lrs is not None and engine == "static":
        raise UsageError("per-run learning rates (lrs) need the bucket engine")
    if initial is not None:
        if engine == "static":
            raise UsageError("given initial weights (initial) need the bucket engine")
        if np.shape(initial.A)[:2] != (keys.shape[0], depth):
            raise UsageError(f"initial weights of shape {np.shape(initial.A)} do not fit {keys.shape[0]} runs of "
                             f"depth {depth}")
    lr = _learning_rates(lrs, keys.shape[0], cfg, depth, data.x_train.shape[1])
    sharding = _seed_sharding(keys.shape[0])
    pad = (-keys.shape[0]) % jax.device_count() if sharding is not None else 0
    if pad:
        keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], pad, axis=0)])
        lr = np.concatenate([lr, np.repeat(lr[-1:], pad)])
        if initial is not None:
            initial = jax.tree.map(lambda a: np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]), initial)
    if sharding is not None:
        keys = jax.device_put(keys, sharding)
    if engine == "static":
        return _static_engine(depth, data, cfg), keys
    return _bucket_engine(depth, data, cfg, lr, sharding, initial), keys


def train_seeds(
    keys: jax.Array,
    depth: int,
    data: Dataset,
    cfg: TrainConfig,
    *,
    lrs=None,
    initial: Optional[ResNetParams] = None,
    progress: bool = False,
    desc: Optional[str] = None,
    engine: str = "bucket",
) -> TrainResult:
    """Train one network per key (SP App. A) in one vmapped program; returns per-seed results.

    ``keys``: (S,) PRNG keys (see :func:`seed_keys`). ``lrs``: optional (S,) learning rates,
    one per key, overriding ``cfg.lr`` (e.g. 3 learning rates x 5 seeds as 15 runs of one
    program: repeat the keys and the rates); they are scaled with depth as ``cfg.lr`` is
    (:meth:`TrainConfig.lr_at`), and ``TrainResult.lr`` holds the rates used (``TrainResult.adam_eps``
    Adam's epsilons, :meth:`TrainConfig.adam_eps_at`). The loop over epochs is in Python (progress
    bar, early exit once every run stopped); each epoch is one jitted call. ``engine``:
    ``"bucket"`` (programs shared across depths) or ``"static"`` (one program per depth, the
    reference; no ``lrs``); both give the same numbers to float32 round-off. ``initial``: the
    weights to start from (leading seed axis, depth ``depth``; e.g. the nested weights of a ladder,
    :mod:`resnet_limits.nested`) instead of :func:`initial_params` of each key (bucket engine);
    the keys still draw the minibatches.
    """
    n_seeds = keys.shape[0]
    run, keys = _start(keys, depth, data, cfg, lrs, engine, initial)
    lr = _learning_rates(lrs, n_seeds, cfg, depth, data.x_train.shape[1])  # checked by _start
    eps = cfg.adam_eps_at(depth)
    n_batches = data.x_train.shape[0] // cfg.batch_size
    total = min(cfg.max_updates, cfg.epochs * n_batches)
    state = run.init(keys)

    curves = []
    bar = tqdm(total=total, desc=desc or f"L={depth}", unit="upd", disable=not progress, leave=False)
    for epoch in range(cfg.epochs):
        state, losses = run.epoch(state, keys, jnp.int32(epoch))
        curves.append(_host(losses))
        bar.update(min(n_batches, total - bar.n))
        if not bool(jnp.any(state.active)):
            break
    bar.close()

    train_loss, test_loss = run.evaluate(state.params)
    curve = np.concatenate(curves, axis=1)[:, :total] if curves else np.zeros((n_seeds, 0))
    take = lambda a: _host(a)[:n_seeds]  # noqa: E731
    return TrainResult(
        params=jax.tree.map(take, run.trim(jax.tree.map(_host, state.params))),
        loss_curve=curve[:n_seeds],
        updates=take(state.updates),
        converged=take(state.converged),
        diverged=take(state.diverged),
        train_loss=take(train_loss),
        test_loss=take(test_loss),
        lr=lr,
        adam_eps=None if eps is None else np.full((n_seeds,), eps, np.float32),
    )
