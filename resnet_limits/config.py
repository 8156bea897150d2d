"""One configuration of a depth sweep (layer 2): :class:`SweepConfig`.

A sweep is one frozen, typed :class:`SweepConfig`: what is trained (preset, data set,
parametrisation), how (the trainer's settings), at which depths (the grid) and from which data.
Everything else derives from it:

* the presets are instances (:data:`PRESETS`), and :func:`sweep_config` applies a user's
  overrides to one (validated, one-line :class:`~resnet_limits.errors.UsageError`);
* ``config.json`` is its serialisation (:meth:`SweepConfig.to_json`, :meth:`SweepConfig.from_json`)
  with a schema version (:data:`SCHEMA`): a folder written by an earlier release (no ``schema``
  key) reads as schema 0, a later release reads today's folders by their ``schema``;
* the trainers' own settings are views (:meth:`SweepConfig.train_config`,
  :meth:`SweepConfig.conv_train_config`): every field of
  :class:`~resnet_limits.training.TrainConfig` and
  :class:`~resnet_limits.training.ConvTrainConfig` is a field here, of the same name;
* the command line's ``sweep`` flags come from the fields (:func:`flag_fields`): each field
  says whether it is a flag, its help and the kinds of network (``fc``, ``conv``) it applies to.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional

from resnet_limits.conv import CONFIGS, blocks_per_stage
from resnet_limits.errors import DamagedRunError, UsageError
from resnet_limits.models import ACTIVATIONS, DELTA_MODES, INITS
from resnet_limits.training import OPTIMIZERS, ConvTrainConfig, TrainConfig
from resnet_limits.training.fc import PARAMETRIZATIONS

__all__ = [
    "CONV",
    "DEFAULT_BASE",
    "FC",
    "FREE_FIELDS",
    "MNIST_DIR_ENV",
    "PRESETS",
    "QUICK_MAX_DEPTH",
    "QUICK_MAX_DEPTHS",
    "SCHEMA",
    "SEED_LIMIT",
    "SweepConfig",
    "depth_grid",
    "flag_fields",
    "sweep_config",
]

#: The environment variable naming a folder of MNIST's idx ``.gz`` files (``reproduce``'s default
#: ``--data-dir``; the tests' MNIST data).
MNIST_DIR_ENV = "RESNET_LIMITS_MNIST_DIR"
#: The version of ``config.json``'s layout; 0 is that of folders written before it was recorded.
SCHEMA = 1
FC, CONV = "fc", "conv"
BOTH = (FC, CONV)
SEED_LIMIT = 2**32  # jax.random.PRNGKey takes seeds below this; larger ones repeat smaller ones
#: ``--quick`` caps the grid at this depth (MNIST: :data:`QUICK_MAX_DEPTHS`, 8,000 training
#: images and 10 epochs keep a sweep under 5 minutes on 2 CPU cores).
QUICK_MAX_DEPTH = 1000
QUICK_MAX_DEPTHS = {"tanh-mnist": 203, "relu-mnist": 406}
#: Fields that may differ between two runs into one folder: the depth grid (a folder may be
#: given more depths later), where the data came from (its folder may move) and how many
#: devices one network is spread over.
FREE_FIELDS = ("depths", "min_depth", "max_depth", "depth_base", "quick", "data_info", "data_parallel")


DEFAULT_BASE = 2.0 ** (1.0 / 3.0)


def depth_grid(min_depth: int, max_depth: int, base: float = DEFAULT_BASE) -> list[int]:
    """The distinct floor(base^n) with min_depth <= floor(base^n) <= max_depth (the grid of SP
    App. A: base 2^(1/3), depths 3 ... 10,321)."""
    if min_depth < 1:
        raise UsageError(f"depth must be >= 1, got min depth {min_depth}")
    if max_depth < min_depth:
        raise UsageError(f"max depth {max_depth} is below min depth {min_depth}")
    if not (base > 1 and math.isfinite(base)):
        raise UsageError(f"depth base must be > 1, got {base}")
    out, n = [], 0
    while True:
        L = math.floor(base**n * (1 + 1e-12))  # 2^(3/3) must give 2, not 1.999...
        if L > max_depth:
            break
        if L >= min_depth and (not out or L != out[-1]):
            out.append(L)
        n += 1
    return out


def _setting(default, help: str, *, kinds=BOTH, flag: bool = True, choices=None, metavar: Optional[str] = None):
    """A field of :class:`SweepConfig` with what the command line needs to make its flag."""
    meta = {"help": help, "kinds": tuple(kinds), "flag": flag, "choices": choices, "metavar": metavar}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _recorded(default, help: str, kinds=BOTH):
    """A field the sweep records but no flag sets (what the preset or the data says)."""
    return _setting(default, help, kinds=kinds, flag=False)


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """The whole configuration of a depth sweep (fully-connected SP eq. 1 or convolutional SP eq. 9).

    Defaults are those of the SP synthetic task (SP App. A and the authors' public code); the
    presets (:data:`PRESETS`) are instances. Build one with :func:`sweep_config`, which validates.
    """

    # what is trained
    preset: str = _recorded("tanh-synthetic", "the preset this configuration was made from")
    kind: str = _recorded(FC, "fc: the fully-connected ResNet of SP eq. 1; conv: SP eq. 9")
    dataset: str = _recorded("synthetic", "synthetic (SP §3.1), mnist, cifar10, or imported weights")
    weights: str = _recorded("trained", "trained, or initial: the networks before training", kinds=(FC,))
    source: tuple = _recorded((), "imported runs: where the weights came from", kinds=(FC,))
    activation: str = _setting("tanh", "activation sigma of SP eq. 1", kinds=(FC,), choices=sorted(ACTIVATIONS))
    delta_mode: str = _setting("shared", "delta of SP eq. 1: shared by the layers, per-layer, or none",
                               kinds=(FC,), choices=DELTA_MODES)
    width: int = _setting(10, "width d of the fully-connected network (synthetic task: its dimension; MNIST: "
                              "the embedding's); conv: channels of stage 1 (stages width x 1, 2, 4, 8)")
    # the depth grid
    depths: tuple = _setting((), "explicit depths (override the grid); conv-cifar10: some of its 16 "
                                 "configurations 8 11 12 14 16 18 20 24 28 33 42 50 65 80 100 121 (default all)",
                             metavar="L")
    min_depth: int = _setting(3, "smallest depth of the grid floor(b^n)", kinds=(FC,), metavar="L")
    max_depth: int = _setting(10321, "largest depth of the grid", kinds=(FC,), metavar="L")
    depth_base: float = _setting(DEFAULT_BASE, "grid base b: depths floor(b^n) (default 2^(1/3))", kinds=(FC,),
                                 metavar="B")
    quick: bool = _setting(False, "shrink the grid: L <= 1000 for the synthetic presets, L <= 203 for tanh-mnist "
                                  "and L <= 406 for relu-mnist (under 5 minutes on 2 CPU cores)", kinds=(FC,))
    # seeds and data
    seeds: int = _setting(5, "number of seeds trained at each depth (one vmapped program)", kinds=(FC,))
    seed: int = _setting(0, "base PRNG seed of the networks")
    data_seed: int = _setting(0, "PRNG seed of the data (the synthetic task, the MNIST embedding, mock images)")
    n_train: int = _setting(1024, "cap on the training examples used")
    n_test: int = _setting(256, "cap on the test examples used")
    data_dir: Optional[str] = _setting(None, "MNIST presets: folder with idx .gz files; conv-cifar10: CIFAR-10's "
                                             "binary version (cifar-10-batches-bin); default: tensorflow-datasets",
                                       metavar="DIR")
    mock_data: Optional[int] = _setting(None, "train on N random images of CIFAR-10's shape (offline runs, "
                                              "tests)", kinds=(CONV,), metavar="N")
    data_info: Optional[dict] = _recorded(None, "where the images came from and how they were split")
    # the trainer (TrainConfig, ConvTrainConfig)
    optimizer: str = _setting("adam", "optimiser (the presets: adam, as the authors' code)", kinds=(FC,), choices=OPTIMIZERS)
    lr: float = _setting(0.01, "learning rate (conv: the peak of the cosine schedule)")
    batch_size: int = _setting(32, "minibatch size")
    epochs: int = _setting(5, "maximum number of epochs")
    max_updates: int = _setting(160, "cap T_max on the updates", kinds=(FC,))
    epsilon: float = _setting(0.01, "early stop once an epoch's mean training loss is below epsilon", kinds=(FC,))
    init: str = _setting("xavier-depth", "initialisation: xavier-depth (N(0, (s/(L d))^2) entries), xavier, "
                                         "brownian (SP Remark 2.1), iid (N(0, 1/d) entries), smooth (a random "
                                         "smooth function of k/L)", kinds=(FC,), choices=INITS)
    init_scale: float = _setting(0.01, "s of the xavier-depth initialisation", kinds=(FC,))
    parametrization: str = _setting("learned-delta", "learned-delta (delta is trained, as in SP) or fixed: "
                                                     "delta_k = L^-a in every layer, never trained",
                                    kinds=(FC,), choices=PARAMETRIZATIONS)
    branch_exponent: Optional[float] = _setting(None, "fixed parametrization: delta = L^-A (0.5: Depth-muP; "
                                                      "1: neural-ODE / CompleteP scaling)", kinds=(FC,), metavar="A")
    ref_depth: Optional[float] = _setting(None, "scale the learning rate with depth from L0: eta(L) = eta "
                                                "(L/L0)^e, e = a-1 (adam) or 2a-1 (sgd) under the fixed "
                                                "parametrization", kinds=(FC,), metavar="L0")
    lr_depth_exponent: Optional[float] = _setting(None, "override the exponent e of eta(L) = eta (L/L0)^e",
                                                  kinds=(FC,), metavar="E")
    adam_eps: float = _setting(1e-8, "epsilon of Adam's denominator (not the early-stop --epsilon)", kinds=(FC,))
    adam_eps_depth: bool = _setting(True, "fixed parametrization with --ref-depth: scale Adam's epsilon like the "
                                          "per-layer gradient, eps (L/L0)^-a", kinds=(FC,))
    ref_width: Optional[int] = _setting(None, "scale the learning rate with the width from d0 (muP-style for "
                                              "Adam: eta d0/d)", kinds=(FC,), metavar="D0")
    nested: bool = _setting(False, "a ladder of depths L0 2^j whose initial weights are nested (depth 2L's "
                                   "refine depth L's) and which share their data order", kinds=(FC,))
    base_depth: Optional[int] = _setting(None, "L0 of a nested ladder (default: the smallest depth)", kinds=(FC,),
                                         metavar="L0")
    nesting: str = _setting("law", "law: every depth has its initialisation's law, the paths agree after "
                                   "rescaling; path: the cumulative sums agree exactly", kinds=(FC,),
                            choices=("law", "path"))
    momentum: float = _setting(0.9, "SGD momentum", kinds=(CONV,))
    weight_decay: float = _setting(5e-4, "weight decay", kinds=(CONV,))
    augment: bool = _setting(True, "random crop (pad 4) and horizontal flip of the training images", kinds=(CONV,))
    eval_batch_size: int = _setting(1000, "batch size of the test-set evaluation", kinds=(CONV,))
    data_parallel: int = _setting(1, "shard the batch of one network over N devices (a 'data' mesh axis; "
                                     "parameters replicated)", kinds=(CONV,), metavar="N")

    # ------------------------------------------------------------- views ----------
    def train_config(self) -> TrainConfig:
        """The fully-connected trainer's settings (:class:`~resnet_limits.training.TrainConfig`)."""
        return TrainConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(TrainConfig)})

    def conv_train_config(self) -> ConvTrainConfig:
        """The convolutional trainer's settings (:class:`~resnet_limits.training.ConvTrainConfig`)."""
        return ConvTrainConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ConvTrainConfig)})

    def replace(self, **changes) -> "SweepConfig":
        """A copy with ``changes`` (not validated; :func:`sweep_config` validates)."""
        return dataclasses.replace(self, **changes)

    def differences(self, other: "SweepConfig", free=FREE_FIELDS) -> list[str]:
        """The fields (outside ``free``) in which ``other`` differs, as ``name=old (now new)``."""
        return [f"{f.name}={getattr(self, f.name)!r} (now {getattr(other, f.name)!r})"
                for f in dataclasses.fields(self)
                if f.name not in free and getattr(self, f.name) != getattr(other, f.name)]

    # ------------------------------------------------------------- config.json ----
    def to_json(self) -> dict[str, Any]:
        """``config.json``: ``schema`` and every field of this kind of network (tuples as lists)."""
        out: dict[str, Any] = {"schema": SCHEMA}
        for f in dataclasses.fields(self):
            if self.kind not in f.metadata["kinds"]:
                continue  # a setting of the other kind of network: its default, not written
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "config.json") -> "SweepConfig":
        """Read ``config.json`` of any schema up to :data:`SCHEMA`; :class:`DamagedRunError`
        (one line naming ``where``) for anything that is not one."""
        def damaged(why: str) -> DamagedRunError:
            return DamagedRunError(f"{where} is damaged ({why}); delete the folder and run the sweep again, or "
                                   "choose another --out")

        if not isinstance(obj, Mapping) or not isinstance(obj.get("depths"), list):
            raise damaged("not a run configuration")
        schema = obj.get("schema", 0)
        if not isinstance(schema, int) or schema > SCHEMA:
            raise DamagedRunError(f"{where} has schema {schema!r}, newer than this resnet-limits reads ({SCHEMA}); "
                                  "upgrade resnet-limits")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in obj.items() if k in known}
        unknown = sorted(set(obj) - known - {"schema"})
        if unknown:
            raise damaged(f"settings this resnet-limits does not know: {', '.join(unknown)}")
        if schema == 0:  # written before the kind and an imported run's preset were recorded
            values.setdefault("kind", CONV if obj.get("dataset") == "cifar10" else FC)
            if obj.get("dataset") == "imported":
                values.setdefault("preset", "imported")
        if ("adam_eps_depth" not in obj and values.get("parametrization") == "fixed"
                and values.get("ref_depth") is not None and values.get("optimizer", "adam") == "adam"):
            values["adam_eps_depth"] = False  # written before Adam's epsilon followed the depth: it was constant
        for k in ("depths", "source"):
            if k in values:
                values[k] = tuple(values[k])
        try:
            return cls(**values)
        except TypeError as e:
            raise damaged(f"not a run configuration: {e}") from None


def flag_fields(kind: Optional[str] = None) -> list[dataclasses.Field]:
    """The fields of :class:`SweepConfig` that are command-line flags (of networks of ``kind``)."""
    return [f for f in dataclasses.fields(SweepConfig)
            if f.metadata.get("flag") and (kind is None or kind in f.metadata["kinds"])]


def _kind_of(f: str) -> tuple[str, ...]:
    return SweepConfig.__dataclass_fields__[f].metadata["kinds"]


# ------------------------------------------------------------------ presets -----------

_SYNTHETIC = SweepConfig(
    dataset="synthetic", width=10, n_train=1024, n_test=256, batch_size=32, lr=0.01, optimizer="adam", epochs=5,
    max_updates=160, epsilon=0.01, init="xavier-depth", init_scale=0.01, seeds=5, max_depth=10321,
)
_MNIST = _SYNTHETIC.replace(dataset="mnist", width=25, n_train=60000, n_test=10000, batch_size=50, epochs=10,
                            max_updates=12000, max_depth=942)
_CONV = SweepConfig(kind=CONV, dataset="cifar10", n_train=50000, n_test=10000, depths=tuple(CONFIGS),
                    **dataclasses.asdict(ConvTrainConfig()))


def _with_grid(cfg: SweepConfig) -> SweepConfig:
    return cfg if cfg.depths else cfg.replace(depths=tuple(depth_grid(cfg.min_depth, cfg.max_depth, cfg.depth_base)))


#: The presets of SP App. A and the authors' code. The fully-connected ones train with Adam: the
#: authors' public code trains these runs with Adam (lr 0.01), and with it the trained deltas
#: shrink with depth as in the paper (alpha ~ 0.7); plain SGD leaves delta near 0.2 (alpha ~ 0).
PRESETS: dict[str, SweepConfig] = {
    name: _with_grid(cfg.replace(preset=name, **kw)) for name, cfg, kw in (
        ("tanh-synthetic", _SYNTHETIC, dict(activation="tanh", delta_mode="shared")),
        ("relu-synthetic", _SYNTHETIC, dict(activation="relu", delta_mode="per-layer")),
        ("tanh-mnist", _MNIST, dict(activation="tanh", delta_mode="shared")),
        ("relu-mnist", _MNIST, dict(activation="relu", delta_mode="per-layer")),
        ("conv-cifar10", _CONV, {}),
    )
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def sweep_config(preset: str, **overrides) -> SweepConfig:
    """The configuration of ``preset`` with the user's ``overrides`` (``None`` values ignored), validated.

    ``quick`` caps the fully-connected grid (:data:`QUICK_MAX_DEPTH`, MNIST
    :data:`QUICK_MAX_DEPTHS`) unless ``max_depth`` or ``depths`` is given; ``depths`` (an explicit
    list) wins over the grid. ``mock_data=N`` (conv) trains on N random images and N // 5 test
    images. One-line :class:`UsageError` for an unknown preset or setting, a setting of the other
    kind of network (named by its flag), or a bad value.
    """
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    base = PRESETS[preset]
    given = {k: v for k, v in overrides.items() if v is not None}
    for k, v in given.items():
        if k not in SweepConfig.__dataclass_fields__:
            raise UsageError(f"unknown setting {k!r}")
        if base.kind not in _kind_of(k) and v is not False:
            raise UsageError(f"{_flag(k)} is not a setting of {preset}")
    if "depths" in given:
        depths = sorted({int(L) for L in given["depths"]})
        if not depths or depths[0] < 1:
            raise UsageError(f"depth must be >= 1, got {min(depths) if depths else 'none'}")
        given["depths"] = tuple(depths)
    cfg = base.replace(**given)
    if cfg.kind == FC and "depths" not in given:
        if cfg.quick and "max_depth" not in given:
            cfg = cfg.replace(max_depth=min(cfg.max_depth, QUICK_MAX_DEPTHS.get(preset, QUICK_MAX_DEPTH)))
        grid = depth_grid(cfg.min_depth, cfg.max_depth, cfg.depth_base)
        if not grid:
            raise UsageError(f"the grid floor({cfg.depth_base:g}^n) has no depth between {cfg.min_depth} and "
                             f"{cfg.max_depth}; widen the range or give --depths")
        cfg = cfg.replace(depths=tuple(grid))
    if cfg.nested:
        cfg = cfg.replace(base_depth=cfg.base_depth or cfg.depths[0])
    if cfg.mock_data is not None:
        if cfg.data_dir is not None:
            raise UsageError("--mock-data and --data-dir exclude each other")
        if cfg.mock_data < 2:
            raise UsageError(f"mock data needs at least 2 images, got {cfg.mock_data}")
        cfg = cfg.replace(n_train=int(cfg.mock_data), n_test=max(1, int(cfg.mock_data) // 5))
    validate(cfg)
    return cfg


def validate(cfg: SweepConfig) -> None:
    """Raise :class:`UsageError` (one line) for any value a sweep cannot run with."""
    if cfg.seeds < 1:
        raise UsageError(f"seeds must be >= 1, got {cfg.seeds}")
    for k in ("seed", "data_seed"):
        if not 0 <= getattr(cfg, k) < SEED_LIMIT:
            raise UsageError(f"{k.replace('_', ' ')} must be in 0..{SEED_LIMIT - 1}, got {getattr(cfg, k)}")
    if cfg.n_train < 1 or cfg.n_test < 1:
        raise UsageError("n_train and n_test must be >= 1")
    if cfg.width < 1:
        raise UsageError(f"width must be >= 1, got {cfg.width}")
    if not (cfg.depth_base > 1 and math.isfinite(cfg.depth_base)):
        raise UsageError(f"depth base must be > 1, got {cfg.depth_base}")
    if cfg.dataset == "synthetic" and cfg.data_dir is not None:
        raise UsageError(f"a data folder is only read by the MNIST presets ({cfg.preset} makes its own data)")
    if cfg.nested:
        _validate_ladder(cfg)
    if cfg.kind == CONV:
        if not cfg.depths:
            raise UsageError("give at least one depth")
        for L in cfg.depths:
            blocks_per_stage(L)
        cfg.conv_train_config().validate(cfg.n_train)
    else:
        cfg.train_config().validate(cfg.n_train)


def _validate_ladder(cfg: SweepConfig) -> None:
    """A nested ladder: every depth is L0 2^j (j >= 0), L0 = ``base_depth``."""
    L0 = cfg.base_depth
    if L0 is None or L0 < 1:
        raise UsageError(f"a nested ladder needs a base depth L0 >= 1, got {L0}")
    off = [L for L in cfg.depths if L < L0 or L % L0 or (L // L0) & (L // L0 - 1)]
    if off:
        raise UsageError(f"the depths of a nested ladder are L0 2^j with L0 = {L0}; {off[0]} is not "
                         "(give --depths L0 2L0 4L0 ..., or --depth-base 2)")
