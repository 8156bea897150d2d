"""The notebooks in notebooks/ run top to bottom, and are kept in git without outputs.

Each notebook is executed with nbclient in a fresh ipykernel started by *this* interpreter
(``sys.executable``), from the notebooks/ folder, with the working tree's package first on the
path; any cell error fails the test. The kernel spec is ipykernel's own ("python3" built from
``sys.executable``), never one registered elsewhere on the machine, so the notebooks run in the
environment the tests run in.

The default run executes the first notebook (01, a sweep and its analysis); the others (02, 03:
~25 s each, 04: ~15 s; their numerics are the ones ``test_limits.py``, ``test_backprop.py`` and
``test_studies_coupled_depths.py`` check) run with ``-m slow``. Every notebook's cells compile
and every name it imports exists in the default run.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = ("01_scaling_regimes.ipynb", "02_deep_limits.ipynb", "03_backprop_limits.ipynb", "04_coupled_depths.ipynb")
SLOW = ("02_deep_limits.ipynb", "03_backprop_limits.ipynb", "04_coupled_depths.ipynb")


def test_the_notebooks_are_the_four_stories():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_without_outputs(name):
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, name
    for i, cell in enumerate(code):
        assert cell.outputs == [], f"{name}: code cell {i} has outputs; strip them before committing"
        assert cell.execution_count is None, f"{name}: code cell {i} has an execution count"


def _code(name: str) -> list[str]:
    """The notebook's code cells as Python (IPython's ``%`` magics left out)."""
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    return ["\n".join(line for line in c.source.splitlines() if not line.lstrip().startswith("%"))
            for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_cells_compile_and_their_imports_exist(name):
    for i, source in enumerate(_code(name)):
        tree = ast.parse(source, filename=f"{name} cell {i}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)
            elif isinstance(node, ast.ImportFrom):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    submodule = hasattr(module, "__path__") and importlib.util.find_spec(f"{node.module}.{alias.name}")
                    assert hasattr(module, alias.name) or submodule, f"{name} cell {i}: {node.module} has no {alias.name}"


def _kernel_manager() -> KernelManager:
    """A kernel manager for ipykernel's native "python3" spec, run by this interpreter.

    ``kernel_dirs=[]`` skips every kernel spec installed on the machine (a user's "python3"
    may point at another Python); jupyter_client then falls back to ipykernel's built-in spec,
    whose command is ``[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]``.
    """
    km = KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))
    assert km.kernel_spec.argv[0] == sys.executable, km.kernel_spec.argv
    return km


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(name, monkeypatch):
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    # the kernel inherits the environment: import the package from this working tree
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    client = NotebookClient(nb, km=_kernel_manager(), timeout=600,
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    start = time.perf_counter()
    client.execute(cleanup_kc=True)  # raises CellExecutionError at the first failing cell; shuts the kernel down
    print(f"{name}: {time.perf_counter() - start:.1f} s")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), name
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs), f"{name} drew no inline figure"
