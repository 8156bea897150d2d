"""One configuration (``resnet_limits/config.py``): presets, config.json, the trainers' views, the CLI's flags."""

import argparse
import dataclasses
import json

import pytest

from resnet_limits.cli import SWEEP_OPTIONS, build_parser
from resnet_limits.config import (
    CONV, FC, PRESETS, SCHEMA, SweepConfig, depth_grid, flag_fields, sweep_config,
)
from resnet_limits.errors import DamagedRunError, UsageError
from resnet_limits.training import ConvTrainConfig, TrainConfig


def _sweep_flags() -> dict[str, argparse.Action]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices["sweep"]._actions if a.option_strings and a.dest != "help"}


def test_every_field_has_a_flag_and_every_flag_a_field():
    flags = _sweep_flags()
    recorded = {f.name for f in dataclasses.fields(SweepConfig) if not f.metadata["flag"]}
    assert recorded == {"preset", "kind", "dataset", "weights", "source", "data_info"}  # what the run records
    fields = {f.name for f in flag_fields()}
    assert fields == set(flags) - set(SWEEP_OPTIONS)
    for name in fields:
        assert flags[name].option_strings[0] == "--" + name.replace("_", "-")
        assert flags[name].default is None  # not given: the preset's value


def test_the_trainers_settings_are_fields_of_the_same_name():
    names = {f.name for f in dataclasses.fields(SweepConfig)}
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= names
    assert {f.name for f in dataclasses.fields(ConvTrainConfig)} <= names
    cfg = sweep_config("relu-synthetic", lr=0.003, init="iid")
    assert cfg.train_config() == TrainConfig(activation="relu", delta_mode="per-layer", lr=0.003, init="iid")
    conv = sweep_config("conv-cifar10", mock_data=64, width=8, batch_size=16)
    assert conv.conv_train_config() == ConvTrainConfig(width=8, batch_size=16)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_json_round_trip(name):
    cfg = PRESETS[name]
    text = json.dumps(cfg.to_json())
    assert SweepConfig.from_json(json.loads(text)) == cfg
    assert json.loads(text)["schema"] == SCHEMA
    other = "epsilon" if cfg.kind == CONV else "momentum"  # a setting of the other kind is not written
    assert other not in json.loads(text)


def test_folders_of_the_earlier_release_still_read():
    old = {"dataset": "synthetic", "width": 10, "n_train": 1024, "n_test": 256, "batch_size": 32, "lr": 0.01,
           "optimizer": "adam", "epochs": 5, "max_updates": 160, "epsilon": 0.01, "init": "xavier-depth",
           "init_scale": 0.01, "seeds": 5, "seed": 0, "data_seed": 0, "min_depth": 3, "max_depth": 1000,
           "depth_base": 2 ** (1 / 3), "data_dir": None, "activation": "tanh", "delta_mode": "shared",
           "preset": "tanh-synthetic", "quick": True, "depths": [3, 4, 5]}  # schema 0: no schema, no kind
    cfg = SweepConfig.from_json(old)
    assert cfg.kind == FC and cfg.parametrization == "learned-delta" and cfg.depths == (3, 4, 5)
    assert cfg.differences(sweep_config("tanh-synthetic", quick=True)) == []
    conv = SweepConfig.from_json({"dataset": "cifar10", "epochs": 2, "depths": [8], "mock_data": 64})
    assert conv.kind == CONV
    imported = SweepConfig.from_json({"dataset": "imported", "source": ["x"], "activation": "relu", "width": 3,
                                      "seeds": 1, "n_test": 256, "data_seed": 0, "delta_mode": "none",
                                      "depths": [2]})
    assert imported.preset == "imported" and imported.source == ("x",)


@pytest.mark.parametrize("obj,message", [
    ({"schema": SCHEMA + 1, "depths": [3]}, f"has schema {SCHEMA + 1}, newer than this resnet-limits reads"),
    ({"depths": [3], "colour": "blue"}, "settings this resnet-limits does not know: colour"),
    ({"depths": 3}, "not a run configuration"),
    ([1, 2], "not a run configuration"),
])
def test_what_is_not_a_configuration_is_one_line(obj, message):
    with pytest.raises(DamagedRunError, match=message) as e:
        SweepConfig.from_json(obj, "RUN/config.json")
    assert str(e.value).startswith("RUN/config.json") and "\n" not in str(e.value)


def test_settings_of_the_other_kind_of_network_are_refused_by_their_flag():
    with pytest.raises(UsageError, match="--epsilon is not a setting of conv-cifar10"):
        sweep_config("conv-cifar10", epsilon=0.1)
    with pytest.raises(UsageError, match="--momentum is not a setting of tanh-synthetic"):
        sweep_config("tanh-synthetic", momentum=0.5)
    with pytest.raises(UsageError, match="unknown setting 'colour'"):
        sweep_config("tanh-synthetic", colour="blue")


def test_quick_and_explicit_depths():
    assert sweep_config("tanh-synthetic", quick=True).depths == tuple(depth_grid(3, 1000))
    assert max(sweep_config("relu-mnist", quick=True).depths) == 406
    assert sweep_config("tanh-synthetic", quick=True, max_depth=64).depths[-1] == 64
    assert sweep_config("tanh-synthetic", depths=[8, 3, 8]).depths == (3, 8)
    assert PRESETS["conv-cifar10"].depths[0] == 8 and len(PRESETS["conv-cifar10"].depths) == 16


def test_differences_name_old_and_new_values():
    a, b = sweep_config("tanh-synthetic"), sweep_config("tanh-synthetic", lr=0.1, quick=True)
    assert a.differences(b) == ["lr=0.01 (now 0.1)"]  # the grid is free
