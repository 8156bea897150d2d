"""Deep-network limits with diffrax: paths from weights, Q, and the limit solvers (SP §4; AA §4).

A depth-L ResNet (SP eq. 1) ``h_{k+1} = h_k + delta_k sigma(A_k h_k + b_k)`` defines, through
its weights, paths on the grid ``t_k = k/L`` of [0, 1]; its deep limit is solved with diffrax on
*those same paths*, so that network and limit can be compared pathwise (strong convergence).

Public API (stable; every name is importable from ``resnet_limits.limits``)
----------------------------------------------------------------------------

The package holds one idea per module: ``paths`` (paths on [0, 1]), ``networks`` (a network's
weights as paths; networks on a fine Brownian path), ``qv`` (quadratic variation, Q),
``solvers`` (the limit ODEs/SDE), ``strong`` (per-path strong errors of the convergence study),
``network_limit`` (the limit of one given network; the smooth surrogate of ReLU).

Paths (``paths``; all are ``diffrax.AbstractPath`` subclasses on [0, 1], usable as diffrax controls:
``evaluate(t)`` is the value, ``evaluate(t0, t1)`` the increment):

- :class:`PiecewiseLinearPath` ``(values)``: ``values`` has shape ``(n + 1, *shape)`` (the value at
  ``t_k = k/n``), linear in between; any value shape (matrix ``(d, d)``, vector ``(d,)``, scalar
  ``()``). Properties ``n``, ``shape``, ``grid`` (``t_k``), ``increments`` (``(n, *shape)``);
  ``derivative(t)`` (piecewise-constant slope); ``coarsen(m)`` (values at ``k/m``, m | n);
  ``PiecewiseLinearPath.from_increments(dX)`` (cumulative sum with ``X_0 = 0``).
  Plain arrays inside, so these paths can be ``jax.vmap``-ed over (e.g. one path per sample).
- :class:`ConstantPath` ``(value)``: constant in t (increments 0); e.g. a constant trend Abar.
- :class:`FunctionPath` ``(fn)``: ``t -> fn(t)`` for a smooth closed-form trend (static callable).

Weights -> paths (``networks``; SP §2.1, §4.1, eqs. 7, 10):

- :func:`weight_paths` ``(params, delta_mode, *, beta=None, Abar=None, bbar=None, window=1,
  homogeneous=False) -> WeightPaths`` for ONE network (``params`` without a seed axis).
  ``delta_k`` is absorbed into the weights (as SP Remark 2.2 does for ReLU): the driving paths are
  ``X^A_{t_k} = sum_{j<k} delta_j A_j``, ``X^b_{t_k} = sum_{j<k} delta_j b_j`` (shape (L+1, d, d) /
  (L+1, d)), split as ``X = int Abar dt + W`` (left Riemann sums on the grid, so that
  ``delta_k A_k = Abar_{t_k}/L + W^A_{t_{k+1}} - W^A_{t_k}`` exactly, SP eq. 10): ``Abar``/``bbar``
  are the trend *rates* (the drift of the limit) at ``t_k``, k = 0..L, given or, if None, estimated
  as ``L *`` a centred moving average (half-width ``window - 1``; ``window=1``: the raw weights) of
  ``delta_k A_k``. With ``beta`` given, a given ``Abar`` is in SP's own normalisation
  ``A_k = L^{-beta} Abar_{k/L} + dW`` (rate used: ``L^{1-beta} delta_k Abar_{t_k}``).
  ``WeightPaths`` holds ``X_A, X_b, W_A, W_b, Abar, bbar`` (PiecewiseLinearPath) and
  ``qv_weights`` (L,) for the Ito correction (see :func:`estimate_qv`); method
  ``quadratic_variation(window)`` estimates Q from ``W``'s increments.
- :func:`brownian_increments` ``(key, n_fine, d) -> (dW_A (n_fine, d, d), dW_b (n_fine, d))``:
  SP Remark 2.1 increments on the fine grid (A ~ N(0, 1/(n d^2)), b ~ N(0, 1/(n d))).
- :func:`coarsen_increments` ``(dW, L)``: block sums over blocks of length 1/L (n_fine/L fine steps):
  the weights of the depth-L network that shares the fine path.
- :func:`brownian_network` ``(dW_A, dW_b, L, *, Abar=None, bbar=None, beta=1.) -> ResNetParams``: the
  depth-L Remark 2.1 network on a fine path, with the trend ``L^{-beta} Abar(t_k)`` added (SP eq. 10;
  beta = 1: the drift ``Abar(t_k)/L``), delta = None.

Quadratic variation and Q (``qv``; SP eq. 11, 12):

- :class:`QuadraticVariation` ``(S)``: densities on the intervals [t_k, t_{k+1}) of the
  (d, d+1)-matrix process ``M = [W^A | W^b]``: ``S[k, i, j, l] = d[M_ij, M_il]/dt``.
  ``Q(t, x)`` (``__call__``) is SP eq. 12: ``Q_i = z^T S_i z`` with ``z = (x, 1)``, i.e.
  ``sum_jl x_j x_l Sigma^A_{ijil} + 2 sum_j x_j Sigma^{Ab}_{ij,i} + Sigma^b_{ii}`` (the cross term
  is 0 when W^A, W^b are independent, as SP assumes; it is kept since the network's own Ito
  correction, the Ito formula of SP §4.2 applied to its weights, contains it). ``sigma_A()``, ``sigma_b()`` give
  ``Sigma^A_{ijil}`` (n, d, d, d) and ``Sigma^b_{ii}`` (n, d).
- :func:`estimate_qv` ``(dW_A, dW_b, *, window=None, weights=None, blocks=None)``: ``S_k = n *``
  local average over the ``2 window + 1`` nearest intervals of ``w_k m_k m_k^T`` (``m_k`` = rows
  of ``[dW_A_k | dW_b_k]``; ``w_k`` = ``weights``, default 1); or block averages over ``blocks``
  blocks (a coarser piecewise-constant Q).
- :class:`BrownianQ` ``()``: closed form for Remark 2.1 weights, ``Q_i(t, x) = |x|^2/d^2 + 1/d``.
  :func:`brownian_qv` ``(n, d)``: the same as a :class:`QuadraticVariation`.

Limit solvers (``solvers``; all for ONE input ``x`` of shape (d,), returning the solution at the save times
``ts`` as (len(ts), d); ``jax.jit`` / ``jax.vmap`` over inputs and over paths):

- :func:`solve_linear_ode` ``(x, Abar, bbar, ts, ...)``: dH = (Abar_t H + bbar_t) dt (SP eq. 14, 16).
- :func:`solve_neural_ode` ``(x, Abar, bbar, ts, *, activation="tanh", ...)``:
  dH = sigma(Abar_t H + bbar_t) dt (SP eq. 2); ``activation`` a name or a callable.
  Both: Tsit5, adaptive PID steps (rtol 1e-10, atol 1e-12 by default) clipped to step exactly on
  the knots of piecewise-linear coefficients (where the vector field is only Lipschitz in t).
- :func:`solve_sde` ``(x, W_A, W_b, ts, *, d2_at_0=0., Q=None, Abar=None, bbar=None)``:
  Ito SDE dH = dW^A H + dW^b + 1/2 sigma''(0) Q(t, H) dt + (Abar_t H + bbar_t) dt (SP eq. 15;
  pass Abar/bbar only when beta = 1; ``d2_at_0`` may be a traced scalar, e.g. vmapped over
  with/without the correction). ``MultiTerm(ODETerm(drift), AffineControlTerm(W_A, W_b))``,
  solver ``Euler`` with ``StepTo`` the grid of ``W_A`` (t_k = k/n): on a piecewise-linear control,
  Euler steps on the path's own knots evaluate the diffusion at the left point = Euler-Maruyama,
  i.e. the Ito solution. (A midpoint/Heun rule, or steps finer than the knots, would converge to
  the Stratonovich solution instead; SP eq. 15 is an Ito equation.)
- :class:`AffineControlTerm` ``(W_A, W_b=None)``: the diffrax term ``dW^A y + dW^b`` (y a vector
  (d,) or a matrix (d, m), e.g. the input Jacobian Phi with ``W_b=None``).

The network side: ``resnet_limits.models.forward(params, x, activation=..., delta_mode=...,
return_hidden=True)`` gives h_0..h_L to compare with ``H`` saved at ``PiecewiseLinearPath.grid``
of the coarse path (t_k = k/L). Use float64: ``with jax.enable_x64(True): ...``.

Strong convergence, one path at a time (``strong``; SP Thms 4.3, 4.4):

- :func:`sde_strong_errors` ``(key, *, width, n_fine, depths, qv_blocks, trend_scale=1.)`` and
  :func:`ode_strong_errors` ``(key, *, width, depths, linear_alphas, trend_scale=1.)``:
  ``{case: sup_k |h_k - H_{k/L}|^2 per depth}`` for one random path / trend (vmappable over keys);
  :func:`map_paths` runs them over many keys in chunks; :func:`error_rate` gives the mean,
  standard error and log-log slopes; :func:`sup_sq_error` ``(a, b)`` = sup_k ||a_k - b_k||^2.
- :func:`regime2_strong_errors` ``(key, *, width, n_fine, depths, alphas, trend_scale=1.)``: AA Thm 2
  (Scaling regime 2, 0 < alpha < 1, alpha + beta = 1): on the same fine path as
  :func:`sde_strong_errors`, ``A_k = L^{-beta} Abar(t_k) + dW^A_k``, ``delta = L^{-alpha}``, sigma in
  :data:`REGIME2_ACTIVATIONS` (identity, tanh, csoftplus), against the linear ODE (SP eq. 16) that
  has lost the noise; :func:`linear_ode_rate_terms` ``(activation, alpha, *, noise=False)``: the slope
  in L of E sup^2 of each error term of a linear-ODE case (noise: regime 2), ``{term: slope}``;
  :func:`linear_ode_expected_slope` (same arguments): the slowest of them;
  :func:`linear_case_name` ``(activation, alpha, *, regime=1)``: their names.

The limit of one given network (``network_limit``):

- :func:`network_and_limit` ``(params, xs, activation, delta_mode) -> (h, H, extra)``: tanh: the
  linear ODE on the interpolated weights; ReLU: the Ito SDE of the surrogate
  ``softplus(z) - log 2`` (:data:`SURROGATE`, :func:`surrogate_forward`).
"""

from resnet_limits.limits.network_limit import SURROGATE, SURROGATE_EPS, network_and_limit, surrogate_forward
from resnet_limits.limits.networks import (
    WeightPaths,
    brownian_increments,
    brownian_network,
    coarsen_increments,
    weight_paths,
)
from resnet_limits.limits.paths import ConstantPath, FunctionPath, PiecewiseLinearPath, moving_average, uniform_grid
from resnet_limits.limits.qv import BrownianQ, QuadraticVariation, brownian_qv, estimate_qv
from resnet_limits.limits.regime_limit import HYPOTHESIS_LIMITS, limit_on_weights, own_ode_limit, own_sde_limit
from resnet_limits.limits.solvers import AffineControlTerm, solve_linear_ode, solve_neural_ode, solve_sde
from resnet_limits.limits.strong import (
    REGIME2_ACTIVATIONS,
    SDE_CASES,
    ErrorRate,
    FinePath,
    error_rate,
    fine_path,
    forward_variants,
    linear_case_name,
    linear_ode_expected_slope,
    linear_ode_rate_terms,
    map_paths,
    ode_strong_errors,
    random_smooth_trend,
    random_unit_vector,
    regime2_strong_errors,
    sde_strong_errors,
    sup_sq_error,
)

__all__ = [
    "HYPOTHESIS_LIMITS",
    "REGIME2_ACTIVATIONS",
    "SDE_CASES",
    "SURROGATE",
    "SURROGATE_EPS",
    "AffineControlTerm",
    "BrownianQ",
    "ConstantPath",
    "ErrorRate",
    "FinePath",
    "FunctionPath",
    "PiecewiseLinearPath",
    "QuadraticVariation",
    "WeightPaths",
    "brownian_increments",
    "brownian_network",
    "brownian_qv",
    "coarsen_increments",
    "error_rate",
    "estimate_qv",
    "fine_path",
    "forward_variants",
    "linear_case_name",
    "linear_ode_expected_slope",
    "limit_on_weights",
    "linear_ode_rate_terms",
    "map_paths",
    "moving_average",
    "network_and_limit",
    "ode_strong_errors",
    "own_ode_limit",
    "own_sde_limit",
    "random_smooth_trend",
    "random_unit_vector",
    "regime2_strong_errors",
    "sde_strong_errors",
    "solve_linear_ode",
    "solve_neural_ode",
    "solve_sde",
    "sup_sq_error",
    "surrogate_forward",
    "uniform_grid",
    "weight_paths",
]
