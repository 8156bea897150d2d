"""The studies (layer 3 of DESIGN.md): each runs the mathematics of layer 1 (and the training and run
folders of layer 2), writes JSON with the keys of the dict it returns, PNG figures, and shows its
progress with tqdm.

* ``convergence``: strong convergence of networks to their ODE / Ito SDE limits (SP §4);
* ``backprop``: backpropagation Jacobians to backward ODEs / the Phi SDE (AA §5);
* ``table4``: SP Table 4, alpha and beta over learning rate x batch size;
* ``trained_limits``: a trained network of a sweep folder against its limit;
* ``parametrizations``: depth parametrisations beyond the papers (regimes, limit errors,
  learning-rate transfer, with and without Adam's epsilon following the depth);
* ``width_phase``: a width axis beyond the papers (the synthetic task at d = 10, 32, 100 with a
  muP learning rate; alpha, beta, nu and the verdict over (d, depth range): a phase diagram).

Their figures are drawn by :mod:`resnet_limits.plotting` (from plain arrays and dicts).

Each study module has ``run(...) -> dict`` and a ``format_...(result) -> str`` summary. Import the
module you need (``from resnet_limits.studies import convergence``); this package imports none of
them itself.
"""
