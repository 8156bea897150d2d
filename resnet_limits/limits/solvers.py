"""The limit solvers (diffrax): linear ODE (SP eq. 14, 16), neural ODE (SP eq. 2), Ito SDE (SP eq. 15).

All solve for ONE input ``x`` of shape (d,) and return the solution at the save times ``ts`` as
(len(ts), d); ``jax.jit`` / ``jax.vmap`` over inputs and over paths. Use float64
(``with jax.enable_x64(True): ...``).
"""

from __future__ import annotations

from typing import Optional

import diffrax
import jax
import jax.numpy as jnp

from resnet_limits.limits.paths import PiecewiseLinearPath, _as_path, uniform_grid
from resnet_limits.models import get_activation

__all__ = ["AffineControlTerm", "path_knots", "solve_linear_ode", "solve_neural_ode", "solve_ode", "solve_sde"]


class AffineControlTerm(diffrax.AbstractTerm):
    """The diffrax term dW^A_t y + dW^b_t (SP eq. 15's noise), driven by paths W_A (d, d) and
    W_b (d,) (or None). ``y`` may be a vector (d,) or a matrix (d, m) (e.g. Phi with W_b=None).

    Solved with :class:`diffrax.Euler` stepping on the paths' knots this is Ito integration."""

    W_A: diffrax.AbstractPath
    W_b: Optional[diffrax.AbstractPath] = None

    def vf(self, t, y, args):
        return y

    def contr(self, t0, t1, **kwargs):
        dA = self.W_A.evaluate(t0, t1)
        db = None if self.W_b is None else self.W_b.evaluate(t0, t1)
        return (dA, db)

    def prod(self, vf, control):
        dA, db = control
        out = dA @ vf
        if db is not None:
            out = out + (db if vf.ndim == 1 else db[:, None])
        return out


def _affine(Abar, bbar, t, y):
    out = jnp.zeros_like(y)
    if Abar is not None:
        out = out + Abar.evaluate(t) @ y
    if bbar is not None:
        out = out + bbar.evaluate(t)
    return out


def path_knots(*paths) -> Optional[jax.Array]:
    """Union of the knots of the piecewise-linear coefficients (for step clipping)."""
    ns = sorted({p.n for p in paths if isinstance(p, PiecewiseLinearPath)})
    if not ns:
        return None
    grids = [uniform_grid(n) for n in ns]
    if len(grids) == 1:
        return grids[0]
    return jnp.unique(jnp.concatenate(grids))


def solve_ode(vf, x: jax.Array, ts: jax.Array, knots: Optional[jax.Array], *, rtol: float, atol: float,
              max_steps: Optional[int]) -> jax.Array:
    """dH/dt = vf(t, H, None) on [0, 1], H_0 = x, saved at ``ts``: Tsit5 with adaptive PID steps,
    clipped to ``knots`` (:func:`path_knots`) when given; ``max_steps=None`` sizes the budget from
    the knots. The one diffrax call behind every ODE limit (SP eq. 2, 14, 16)."""
    ts = jnp.asarray(ts, x.dtype)
    pid = diffrax.PIDController(rtol=rtol, atol=atol)
    controller = pid if knots is None else diffrax.ClipStepSizeController(pid, step_ts=knots)
    if max_steps is None:
        max_steps = 4096 + (0 if knots is None else 8 * int(knots.shape[0]))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vf), diffrax.Tsit5(), t0=0.0, t1=1.0, dt0=None, y0=x,
        saveat=diffrax.SaveAt(ts=ts), stepsize_controller=controller, max_steps=max_steps,
    )
    return sol.ys


def solve_linear_ode(
    x: jax.Array,
    Abar,
    bbar,
    ts: jax.Array,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    max_steps: Optional[int] = None,
) -> jax.Array:
    """dH/dt = Abar_t H + bbar_t, H_0 = x (SP eq. 14 / 16), saved at ``ts``: (len(ts), d).

    ``Abar``: path with values (d, d) (PiecewiseLinearPath, ConstantPath, FunctionPath; an array
    (n+1, d, d) or a callable is converted), ``bbar`` likewise (d,) or None. Tsit5 with adaptive
    PID steps, clipped to the knots of piecewise-linear coefficients.
    """
    Abar, bbar = _as_path(Abar), _as_path(bbar)
    vf = lambda t, y, args: _affine(Abar, bbar, t, y)  # noqa: E731
    return solve_ode(vf, x, ts, path_knots(Abar, bbar), rtol=rtol, atol=atol, max_steps=max_steps)


def solve_neural_ode(
    x: jax.Array,
    Abar,
    bbar,
    ts: jax.Array,
    *,
    activation="tanh",
    rtol: float = 1e-10,
    atol: float = 1e-12,
    max_steps: Optional[int] = None,
) -> jax.Array:
    """Neural ODE dH/dt = sigma(Abar_t H + bbar_t), H_0 = x (SP eq. 2), saved at ``ts``.

    ``activation``: a name of ``resnet_limits.models.ACTIVATIONS`` or a callable.
    Same solver and step as :func:`solve_linear_ode`.
    """
    sigma = activation if callable(activation) else get_activation(activation).fn
    Abar, bbar = _as_path(Abar), _as_path(bbar)
    vf = lambda t, y, args: sigma(_affine(Abar, bbar, t, y))  # noqa: E731
    return solve_ode(vf, x, ts, path_knots(Abar, bbar), rtol=rtol, atol=atol, max_steps=max_steps)


def solve_sde(
    x: jax.Array,
    W_A,
    W_b,
    ts: jax.Array,
    *,
    d2_at_0: float = 0.0,
    Q=None,
    Abar=None,
    bbar=None,
) -> jax.Array:
    """Ito SDE of SP eq. 15 on the given paths, saved at ``ts``: (len(ts), d).

        dH = dW^A_t H + dW^b_t + 1/2 sigma''(0) Q(t, H) dt + (Abar_t H + bbar_t) dt,  H_0 = x

    ``W_A``: PiecewiseLinearPath (n+1, d, d); ``W_b``: PiecewiseLinearPath (n+1, d) or None.
    ``Q``: callable (t, x) -> (d,) (:class:`QuadraticVariation`, :class:`BrownianQ`), used when
    ``d2_at_0 != 0``. ``Abar``/``bbar``: the beta = 1 drift (None otherwise). Euler with StepTo on
    the knots t_k = k/n of ``W_A`` = Euler-Maruyama on the fine path, i.e. Ito. ``ts`` should be
    knots (e.g. a coarse grid k/L with L | n): the dense output between knots is linear.
    """
    W_A, W_b = _as_path(W_A), _as_path(W_b)
    Abar, bbar = _as_path(Abar), _as_path(bbar)
    n = W_A.n
    if W_b is not None and isinstance(W_b, PiecewiseLinearPath) and W_b.n != n:
        raise ValueError(f"W_A and W_b must share the grid ({n} vs {W_b.n} steps)")
    # d2_at_0 may be a traced scalar (e.g. vmapped over with/without the correction)
    use_q = Q is not None and not (isinstance(d2_at_0, (int, float)) and d2_at_0 == 0.0)

    def drift(t, y, args):
        out = _affine(Abar, bbar, t, y)
        if use_q:
            out = out + 0.5 * d2_at_0 * Q(t, y)
        return out

    terms = diffrax.MultiTerm(diffrax.ODETerm(drift), AffineControlTerm(W_A, W_b))
    sol = diffrax.diffeqsolve(
        terms, diffrax.Euler(), t0=0.0, t1=1.0, dt0=None, y0=x,
        saveat=diffrax.SaveAt(ts=jnp.asarray(ts, x.dtype)),
        stepsize_controller=diffrax.StepTo(ts=uniform_grid(n, x.dtype)),
        max_steps=n,
    )
    return sol.ys
