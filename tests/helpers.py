"""Small helpers shared by the tests (import with ``from helpers import ...``)."""

from resnet_limits.run import Run


def load_depth(run_dir, depth: int):
    """(networks with a leading seed axis, metrics) of one finished depth of a run folder."""
    run = Run.open(run_dir)
    return run.params(depth), run.metrics(depth)
