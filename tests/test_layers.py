"""Layer 1 of DESIGN.md (the mathematics) pulls in no plotting, progress bars or argument parsing.

JAX itself imports ``argparse`` (through ``unittest``), so the check runs in a fresh interpreter
that imports the third-party dependencies first, forgets the impure modules they loaded, and
then imports each layer-1 module: ``matplotlib`` and ``tqdm`` must not appear at all, and no
file of ``resnet_limits`` may be the one importing any of the three. (Imports inside function
bodies run later; ``../shared/tools/check_layers.py`` reads those in the source.)
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import resnet_limits

LAYER1 = ("models", "conv", "limits", "backprop", "scaling")
IMPURE = ("matplotlib", "tqdm", "argparse")

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


def test_layer1_imports_no_matplotlib_tqdm_or_argparse():
    present = [m for m in LAYER1 if importlib.util.find_spec(f"resnet_limits.{m}") is not None]
    assert {"models", "limits", "backprop", "scaling"} <= set(present)
    script = _CHECK.format(impure=IMPURE, never=("matplotlib", "tqdm"))
    pkg = str(Path(resnet_limits.__file__).parent)
    out = subprocess.run([sys.executable, "-c", script, pkg, *present], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", out.stdout
