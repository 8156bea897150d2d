"""The fully-connected residual network of SP eq. 1.

    h_{k+1} = h_k + delta_k * sigma(A_k h_k + b_k),   h_0 = x,   k = 0..L-1

Parameters are stacked on a leading depth axis (``A``: L x d x d, ``b``: L x d,
``delta``: scalar or L) and the forward pass is a ``jax.lax.scan`` over depth.
Hidden states are batched as rows (B x d); the column-vector convention
``A_k h`` of the paper is ``h @ A_k.T`` on a batch.

Everything here is a pure function of pytrees; :class:`ResNet` is a thin flax
module around the same functions for users who prefer ``init``/``apply``.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = [
    "depth_capacity",
    "ACTIVATIONS",
    "DELTA_MODES",
    "INITS",
    "Activation",
    "ResNet",
    "ResNetParams",
    "SMOOTH_FREQUENCIES",
    "effective_delta",
    "forward",
    "forward_to_depth",
    "fourier_modes",
    "get_activation",
    "init_params",
    "init_scales",
    "layer",
    "layer_weights",
    "mse",
    "pad_params",
    "smooth_in_depth",
]

DELTA_MODES = ("none", "shared", "per-layer")


class Activation(NamedTuple):
    """An activation sigma with the derivatives the limit theory needs."""

    name: str
    fn: Callable[[jax.Array], jax.Array]
    d1: Callable[[jax.Array], jax.Array]  # sigma'
    d2_at_0: float  # sigma''(0): drives the Ito correction of SP eq. 15
    smooth: bool  # sigma(0)=0, sigma'(0)=1, bounded sigma''' (limit theory applies)


def _csoftplus(x):
    # 2 (softplus(x) - log 2): sigma(0) = 0, sigma'(0) = 1, sigma''(0) = 1/2 (SP Assumption 4.2 with sigma''(0) != 0).
    return 2.0 * (jax.nn.softplus(x) - math.log(2.0))


ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation("tanh", jnp.tanh, lambda x: 1.0 - jnp.tanh(x) ** 2, 0.0, True),
    "relu": Activation(
        "relu", jax.nn.relu, lambda x: (x > 0).astype(x.dtype), 0.0, False
    ),
    "identity": Activation("identity", lambda x: x, jnp.ones_like, 0.0, True),
    "csoftplus": Activation(
        "csoftplus", _csoftplus, lambda x: 2.0 * jax.nn.sigmoid(x), 0.5, True
    ),
    # the plain softplus log(1 + e^x): sigma(0) = log 2, sigma'(0) = 1/2, sigma''(0) = 1/4; not
    # centred, so outside the limit theory's assumptions (csoftplus is its centred, rescaled form)
    "softplus": Activation("softplus", jax.nn.softplus, jax.nn.sigmoid, 0.25, False),
}

INITS = ("xavier-depth", "xavier", "brownian", "iid", "smooth")
#: Frequencies 1..F of the ``smooth`` initialisation (with the constant: 2F + 1 Fourier modes).
SMOOTH_FREQUENCIES = 2


def get_activation(name: str) -> Activation:
    """Look up an activation by name; raises ``ValueError`` with the choices."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose from {', '.join(sorted(ACTIVATIONS))}"
        ) from None


class ResNetParams(NamedTuple):
    """Stacked weights of a depth-L network (SP eq. 1).

    ``A``: (L, d, d), ``b``: (L, d), ``delta``: () for a shared delta, (L,) for
    per-layer deltas, ``None`` when the network has no delta (delta_k = 1).
    Any extra leading axes (seeds) are allowed by the functions that vmap.
    """

    A: jax.Array
    b: jax.Array
    delta: Optional[jax.Array]

    @property
    def depth(self) -> int:
        return self.A.shape[-3]

    @property
    def width(self) -> int:
        return self.A.shape[-1]


def effective_delta(params: ResNetParams, delta_mode: str) -> jax.Array:
    """delta_k for every layer, shape (L,): |delta| shared, delta_k per layer, or 1."""
    L = params.A.shape[0]
    if delta_mode == "none" or params.delta is None:
        return jnp.ones((L,), params.A.dtype)
    if delta_mode == "shared":
        return jnp.full((L,), jnp.abs(params.delta), params.A.dtype)
    if delta_mode == "per-layer":
        return params.delta
    raise ValueError(f"unknown delta mode {delta_mode!r}; choose from {DELTA_MODES}")


def layer(h: jax.Array, A: jax.Array, b: jax.Array, delta: jax.Array, sigma) -> jax.Array:
    """One residual step h + delta sigma(A h + b) on a batch of rows (SP eq. 1)."""
    return h + delta * sigma(h @ A.T + b)


def forward(
    params: ResNetParams,
    x: jax.Array,
    *,
    activation: str = "tanh",
    delta_mode: str = "shared",
    return_hidden: bool = False,
):
    """Output h_L of SP eq. 1 for inputs ``x`` (B x d, or d), by scan over depth.

    With ``return_hidden`` returns all hidden states h_0..h_L stacked as
    (L+1) x B x d (or (L+1) x d).
    """
    sigma = get_activation(activation).fn
    deltas = effective_delta(params, delta_mode)

    def step(h, layer_params):
        A, b, delta = layer_params
        h_next = layer(h, A, b, delta, sigma)
        return h_next, (h_next if return_hidden else None)

    h_L, hidden = jax.lax.scan(step, x, (params.A, params.b, deltas))
    if return_hidden:
        return jnp.concatenate([x[None], hidden], axis=0)
    return h_L


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _first_layers(activation: str, A, b, deltas, x, depth):
    """h_depth of SP eq. 1 from the first ``depth`` stacked layers: a loop with a dynamic trip count."""
    sigma = get_activation(activation).fn

    def body(carry):
        k, h = carry
        return k + 1, layer(h, A[k], b[k], deltas[k], sigma)

    return jax.lax.while_loop(lambda c: c[0] < depth, body, (jnp.zeros((), jnp.int32), x))[1]


def _first_layers_fwd(activation: str, A, b, deltas, x, depth):
    sigma = get_activation(activation).fn

    def body(carry):
        k, h, hs = carry
        hs = jax.lax.dynamic_update_index_in_dim(hs, h, k, 0)
        return k + 1, layer(h, A[k], b[k], deltas[k], sigma), hs

    hs = jnp.zeros((A.shape[0],) + x.shape, x.dtype)  # h_0..h_{L-1}; rows >= L stay 0
    _, h, hs = jax.lax.while_loop(lambda c: c[0] < depth, body, (jnp.zeros((), jnp.int32), x, hs))
    return h, (A, b, deltas, hs, depth)


def _first_layers_bwd(activation: str, res, g):
    """Backward recursion of AA eq. 5.3 on a row covector g_{k+1} = dloss/dh_{k+1}.

    With z_k = A_k h_k + b_k and u_k = delta_k sigma'(z_k) * g_{k+1}:
    g_k = g_{k+1} + u_k A_k,  dA_k = u_k^T h_k,  db_k = sum_batch u_k,
    d delta_k = <sigma(z_k), g_{k+1}>. Layers k >= depth get zero gradient.
    """
    act = get_activation(activation)
    A, b, deltas, hs, depth = res

    def body(carry):
        k, g, dA, db, dd = carry
        k = k - 1
        h = hs[k]
        z = h @ A[k].T + b[k]
        u = deltas[k] * act.d1(z) * g
        dA = jax.lax.dynamic_update_index_in_dim(dA, u.T @ h, k, 0)
        db = jax.lax.dynamic_update_index_in_dim(db, u.sum(0), k, 0)
        dd = jax.lax.dynamic_update_index_in_dim(dd, jnp.sum(act.fn(z) * g), k, 0)
        return k, g + u @ A[k], dA, db, dd

    init = (depth, g, jnp.zeros_like(A), jnp.zeros_like(b), jnp.zeros_like(deltas))
    _, gx, dA, db, dd = jax.lax.while_loop(lambda c: c[0] > 0, body, init)
    return dA, db, dd, gx, None


_first_layers.defvjp(_first_layers_fwd, _first_layers_bwd)


def forward_to_depth(
    params: ResNetParams,
    x: jax.Array,
    depth,
    *,
    activation: str = "tanh",
    delta_mode: str = "shared",
) -> jax.Array:
    """Output h_L of SP eq. 1 from the first L = ``depth`` layers of weights stacked in C >= L.

    ``depth`` may be a traced integer, so one compiled program serves every depth up to the
    capacity C = ``params.A.shape[0]``; layers k >= L are skipped (no arithmetic) and get zero
    gradient. The forward pass is a loop with a dynamic trip count; its VJP is the backward
    recursion of AA eq. 5.3 (see ``_first_layers_bwd``), equal to autodiff of :func:`forward`
    on the first L layers up to float round-off. ``x``: B x d (or d).
    """
    get_activation(activation)  # a clear error for a bad name
    deltas = effective_delta(params, delta_mode)
    depth = jnp.asarray(depth, jnp.int32)
    if x.ndim == 1:
        return _first_layers(activation, params.A, params.b, deltas, x[None], depth)[0]
    return _first_layers(activation, params.A, params.b, deltas, x, depth)


def mse(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared error, mean over batch and coordinates (SP §3.1; the authors' public code)."""
    return jnp.mean((pred - target) ** 2)


def fourier_modes(t: jax.Array, n_frequencies: int = SMOOTH_FREQUENCIES) -> jax.Array:
    """The 2F + 1 real Fourier modes of the ``smooth`` initialisation at the times ``t`` (T,): (T, 2F + 1).

    phi_0 = 1, phi_{2f-1}(t) = sqrt 2 cos(2 pi f t), phi_{2f}(t) = sqrt 2 sin(2 pi f t), f = 1..F, all
    divided by sqrt(2F + 1), so that sum_m phi_m(t)^2 = 1 at every t: i.i.d. N(0, s^2) coefficients
    give a function whose value at every t is N(0, s^2).
    """
    t = jnp.asarray(t)
    f = 2.0 * math.pi * jnp.arange(1, n_frequencies + 1, dtype=t.dtype)
    waves = jnp.stack([jnp.cos(t[:, None] * f), jnp.sin(t[:, None] * f)], axis=-1).reshape(t.shape[0], -1)
    modes = jnp.concatenate([jnp.ones((t.shape[0], 1), t.dtype), math.sqrt(2.0) * waves], axis=1)
    return modes / math.sqrt(2 * n_frequencies + 1)


def smooth_in_depth(coefficients: jax.Array, t: jax.Array) -> jax.Array:
    """Weights W(t_k) = sum_m phi_m(t_k) C_m of a smooth function of t on the times ``t`` (T,).

    ``coefficients``: (2F + 1, *entry), one per mode of :func:`fourier_modes`; returns (T, *entry).
    """
    modes = fourier_modes(t, (coefficients.shape[0] - 1) // 2).astype(coefficients.dtype)
    return jnp.tensordot(modes, coefficients, axes=1)


def _initial_delta(key, L: int, delta_mode: str, branch_exponent: Optional[float], dtype):
    """delta of :func:`init_params`: L^{-a} in every layer when ``branch_exponent`` a is given."""
    if delta_mode == "none":
        if branch_exponent is not None:
            raise ValueError("a branch exponent fixes delta, but delta mode 'none' has no delta")
        return None
    if delta_mode not in ("shared", "per-layer"):
        raise ValueError(f"unknown delta mode {delta_mode!r}; choose from {DELTA_MODES}")
    if branch_exponent is not None:
        value = jnp.asarray(float(L) ** -float(branch_exponent), dtype)
        return value if delta_mode == "shared" else jnp.full((L,), value, dtype)
    if delta_mode == "shared":
        return jnp.asarray(1.0 / L, dtype)
    return jax.random.normal(key, (L,), dtype) / L


def init_params(
    key: jax.Array,
    depth: int,
    width: int,
    *,
    init: str = "xavier-depth",
    delta_mode: str = "shared",
    scale: float = 0.01,
    branch_exponent: Optional[float] = None,
    dtype=jnp.float32,
) -> ResNetParams:
    """Initial weights of SP eq. 1 (the authors' public code; ``iid``, ``smooth`` and ``branch_exponent``
    for the depth-parametrisation study, beyond the papers).

    - ``xavier-depth`` (the authors' default, s = ``scale``):
      A_{k,ij} ~ N(0, (s/(L d))^2), b_{k,i} ~ N(0, (s/(L sqrt d))^2).
    - ``xavier``: the same without the depth factor,
      A_{k,ij} ~ N(0, (s/d)^2), b_{k,i} ~ N(0, (s/sqrt d)^2).
    - ``brownian``: i.i.d. increments of a Brownian motion (SP Remark 2.1),
      A_{k,mn} ~ N(0, 1/(L d^2)), b_{k,n} ~ N(0, 1/(L d)).
    - ``iid``: A_{k,mn}, b_{k,n} ~ N(0, 1/d), i.i.d. over k (``scale`` unused). With a fixed
      delta = L^{-1/2} (``branch_exponent`` 1/2, Depth-muP) the absorbed weights delta A_k are
      Brownian increments with quadratic variation 1/d per entry and unit time, where SP Remark 2.1
      has 1/d^2 (the b part, 1/d, is the same).
    - ``smooth``: a random smooth function of t_k = k/L (Marion et al. 2023):
      A_k = sum_m phi_m(k/L) C^A_m with the 2F + 1 Fourier modes of :func:`fourier_modes`
      (F = :data:`SMOOTH_FREQUENCIES`) and C^A_m entries ~ N(0, 1/d), likewise b (``scale``
      unused); every A_{k,mn} is N(0, 1/d) as in ``iid``, but ||A_{k+1} - A_k|| = O(1/L).

    delta: ``branch_exponent`` a given: delta_k = L^{-a} (shared: one value; per-layer: L equal
    values; the ``fixed`` parametrisation of :class:`~resnet_limits.training.TrainConfig`);
    otherwise shared delta = 1/L, per-layer delta_k ~ N(0, (1/L)^2); none -> None.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    L, d = depth, width
    kA, kb, kd = jax.random.split(key, 3)
    sA, sb = init_scales(L, d, init, scale)
    A, b = layer_weights(kA, kb, jnp.arange(L, dtype=dtype) / L, d, sA, sb, smooth=init == "smooth", dtype=dtype)
    return ResNetParams(A, b, _initial_delta(kd, L, delta_mode, branch_exponent, dtype))


def layer_weights(kA, kb, t: jax.Array, width: int, s_A, s_b, *, smooth: bool, dtype=jnp.float32,
                  ) -> tuple[jax.Array, jax.Array]:
    """Weights A (T, d, d), b (T, d) of the layers at the times ``t`` = k/L (T,) as :func:`init_params`
    draws them from the keys ``kA``, ``kb``: i.i.d. N(0, s^2) entries, or (``smooth``) the smooth
    function of :func:`smooth_in_depth` with N(0, s^2) Fourier coefficients. ``t`` may hold more
    times than layers (a padded stack); i.i.d. draws use only its length."""
    d, T = width, t.shape[0]
    if smooth:
        M = 2 * SMOOTH_FREQUENCIES + 1
        return (smooth_in_depth(s_A * jax.random.normal(kA, (M, d, d), dtype), t),
                smooth_in_depth(s_b * jax.random.normal(kb, (M, d), dtype), t))
    return s_A * jax.random.normal(kA, (T, d, d), dtype), s_b * jax.random.normal(kb, (T, d), dtype)


def init_scales(depth: int, width: int, init: str = "xavier-depth", scale: float = 0.01) -> tuple[float, float]:
    """Standard deviations (s_A, s_b) of the weights that :func:`init_params` draws (the authors'
    public code; SP Remark 2.1); for ``smooth`` those of its Fourier coefficients (and of every weight)."""
    L, d = depth, width
    if init == "xavier-depth":
        return scale / (L * d), scale / (L * math.sqrt(d))
    if init == "xavier":
        return scale / d, scale / math.sqrt(d)
    if init == "brownian":
        return 1.0 / (math.sqrt(L) * d), 1.0 / math.sqrt(L * d)
    if init in ("iid", "smooth"):
        return 1.0 / math.sqrt(d), 1.0 / math.sqrt(d)
    raise ValueError(f"unknown init {init!r}; choose from {', '.join(INITS)}")


def depth_capacity(depth: int) -> int:
    """Capacity C >= L in which a depth-L network's weights are stacked for
    :func:`forward_to_depth`: 64, 256, 1024, then the next power of two.

    A quick grid (L <= 1,000) needs 3 programs, the full grid (L <= 10,321) 7, and a network never
    pays for more than 4x (L < 1,024) or 2x its depth in the cheap per-slot work of padded layers.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    for c in (64, 256, 1024):
        if depth <= c:
            return c
    return 1 << (depth - 1).bit_length()


def pad_params(params: ResNetParams, capacity: int) -> ResNetParams:
    """The same network stacked in ``capacity`` >= L layers: zero weights (and deltas) after layer L.

    :func:`forward_to_depth` with ``depth = L`` on the result equals :func:`forward` on ``params``.
    """
    L = params.A.shape[0]
    if capacity < L:
        raise ValueError(f"capacity {capacity} is below the depth {L}")
    pad = lambda a: jnp.concatenate([a, jnp.zeros((capacity - L,) + a.shape[1:], a.dtype)])  # noqa: E731
    delta = params.delta
    if delta is not None and delta.ndim == 1:
        delta = pad(delta)
    return ResNetParams(pad(params.A), pad(params.b), delta)


class ResNet(nn.Module):
    """Flax wrapper of :func:`forward` with stacked parameters ``A``, ``b``, ``delta``.

    ``ResNet(depth, width).init(key, x)`` draws the weights with :func:`init_params`;
    ``apply`` runs the scan. ``params['params']`` converts to :class:`ResNetParams`
    with :meth:`to_params`.
    """

    depth: int
    width: int
    activation: str = "tanh"
    delta_mode: str = "shared"
    init_scheme: str = "xavier-depth"  # ``init`` would shadow flax's Module.init
    scale: float = 0.01

    @nn.compact
    def __call__(self, x, return_hidden: bool = False):
        def _init(key, part):
            p = init_params(
                key, self.depth, self.width, init=self.init_scheme,
                delta_mode=self.delta_mode, scale=self.scale,
            )
            return getattr(p, part)

        # flax gives each parameter its own key; each part is drawn as init_params draws it.
        A = self.param("A", lambda k: _init(k, "A"))
        b = self.param("b", lambda k: _init(k, "b"))
        delta = None
        if self.delta_mode != "none":
            delta = self.param("delta", lambda k: _init(k, "delta"))
        return forward(
            ResNetParams(A, b, delta), x, activation=self.activation,
            delta_mode=self.delta_mode, return_hidden=return_hidden,
        )

    @staticmethod
    def to_params(variables) -> ResNetParams:
        p = variables["params"]
        return ResNetParams(p["A"], p["b"], p.get("delta"))
