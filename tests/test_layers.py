"""The layers of ``docs/architecture.md``: imports go down, layer 1 stays pure, the page is true.

Two checks: the imports written in every module's source (an import of a higher layer, or of
matplotlib, tqdm or argparse in layer 1, is a fault), and what importing layer 1 actually loads
(JAX itself imports ``argparse`` through ``unittest``, so that check runs in a fresh interpreter
that imports the third-party dependencies first and then watches which file of ours pulls in an
impure module).
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import resnet_limits

PKG = Path(resnet_limits.__file__).parent
PAGE = PKG.parent / "docs" / "architecture.md"
LAYERS = {"errors": 0}
LAYERS.update(dict.fromkeys(("models", "conv", "limits", "backprop", "scaling", "nested"), 1))
LAYERS.update(dict.fromkeys(("config", "data", "training", "sweeps", "weights", "run", "runtime", "distributed"), 2))
LAYERS.update(dict.fromkeys(("analysis", "plotting", "studies"), 3))
LAYERS.update(dict.fromkeys(("cli", "reproduce"), 4))
IMPURE = ("matplotlib", "tqdm", "argparse")


def _imported(node) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:
        if node.module == "resnet_limits":
            return [f"resnet_limits.{a.name}" for a in node.names]
        return [node.module]
    return []


def _top(f: Path) -> str:
    return f.relative_to(PKG).parts[0].removesuffix(".py")


def layer_faults() -> list[str]:
    """Every import that goes up a layer, or brings an impure module into layer 1."""
    out = []
    for f in sorted(PKG.rglob("*.py")):
        top = _top(f)
        if top == "__init__":
            continue
        layer = LAYERS.get(top)
        if layer is None:
            out.append(f"{f}: in no layer of docs/architecture.md")
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            for name in _imported(node):
                if layer == 1 and name.split(".")[0] in IMPURE:
                    out.append(f"{f}:{node.lineno}: layer 1 imports {name}")
                if name.startswith("resnet_limits."):
                    target = LAYERS.get(name.split(".")[1], 0)
                    if target > layer:
                        out.append(f"{f}:{node.lineno}: layer {layer} imports {name} (layer {target})")
    return out


def test_imports_go_down_and_layer_1_is_pure():
    assert layer_faults() == []


def test_the_architecture_page_names_every_module_in_its_layer():
    page = {}
    for row in re.findall(r"^\| (\d)\. [^|]+\| ([^|]+)\|", PAGE.read_text(), flags=re.M):
        for name in re.findall(r"`(\w+)`", row[1]):
            page[name] = int(row[0])
    assert page == LAYERS
    modules = {_top(f) for f in PKG.rglob("*.py")} - {"__init__"}
    assert modules == set(LAYERS), "a module is missing from docs/architecture.md (or the page names one that is gone)"


_CHECK = """
import importlib, sys, traceback
PKG, IMPURE, NEVER = sys.argv[1], {impure!r}, {never!r}
faults = []

class Spy:  # names the file of ours that imports an impure module, if one does
    def find_spec(self, name, path=None, target=None):
        if name in IMPURE:
            for f in reversed(traceback.extract_stack()[:-1]):
                if not (f.filename.startswith("<frozen") or "importlib" in f.filename):
                    if f.filename.startswith(PKG):
                        faults.append(f"{{f.filename}}:{{f.lineno}} imports {{name}}")
                    break
        return None

import numpy, jax, jax.numpy, optax, diffrax, equinox, flax  # what these load is theirs
for m in [m for m in sys.modules if m.split(".")[0] in IMPURE]:
    del sys.modules[m]
sys.meta_path.insert(0, Spy())
for name in sys.argv[2:]:
    importlib.import_module("resnet_limits." + name)
    faults += [f"resnet_limits.{{name}} pulls in {{m}}" for m in NEVER if m in sys.modules]
    if faults:
        break
print("\\n".join(faults))
"""


def test_importing_layer_1_loads_no_matplotlib_tqdm_or_argparse():
    layer1 = [m for m, layer in LAYERS.items() if layer == 1]
    script = _CHECK.format(impure=IMPURE, never=("matplotlib", "tqdm"))
    out = subprocess.run([sys.executable, "-c", script, str(PKG), *layer1], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", out.stdout
