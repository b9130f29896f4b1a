"""gankit.registry and the concrete registries (datasets, models, objectives)."""
from __future__ import annotations

import pytest

from gankit.config import ConfigError, DataConfig, ObjectiveConfig, from_dict
from gankit.data import DATASETS, build_dataset
from gankit.models import DISCRIMINATORS, GENERATORS, build_models
from gankit.objectives import OBJECTIVES, build_objective
from gankit.registry import Registry, unknown_name_message


def test_register_get_names_contains():
    reg: Registry[int] = Registry("widget")

    @reg.register("b")
    def b():
        return 2

    reg.register("a")(1)
    assert reg.get("b") is b and reg.get("a") == 1
    assert reg.names() == ["a", "b"]
    assert "a" in reg and "c" not in reg


def test_duplicate_name_raises():
    reg: Registry[int] = Registry("widget")
    reg.register("x")(1)
    with pytest.raises(ValueError, match="widget 'x' is already registered"):
        reg.register("x")(2)
    assert reg.get("x") == 1


def test_unknown_name_suggests_closest_and_lists_choices():
    reg: Registry[int] = Registry("widget")
    for name in ("dcgan", "mlp"):
        reg.register(name)(0)
    with pytest.raises(KeyError) as err:
        reg.get("dcgn")
    msg = err.value.args[0]
    assert "unknown widget 'dcgn'" in msg and "did you mean 'dcgan'" in msg and "dcgan, mlp" in msg
    assert "did you mean" not in unknown_name_message("widget", "zzzz", ["dcgan", "mlp"])


def test_builtin_registries():
    assert {"mnist10k", "mnist", "fashion-mnist", "cifar10", "folder", "ring", "grid"} <= set(DATASETS.names())
    assert {"dcgan", "mlp"} <= set(GENERATORS.names()) and {"dcgan", "mlp"} <= set(DISCRIMINATORS.names())
    assert {"ns", "minimax"} <= set(OBJECTIVES.names())


def test_unknown_dataset_is_a_config_error():
    with pytest.raises(ConfigError, match=r"data\.name: unknown dataset 'mnist10'; did you mean 'mnist10k'"):
        build_dataset(DataConfig(name="mnist10"))


def test_unknown_model_is_a_config_error():
    cfg = from_dict({"model": {"generator": {"name": "dcgn"}}})
    with pytest.raises(ConfigError, match=r"model\.generator\.name: unknown generator 'dcgn'; did you mean 'dcgan'"):
        build_models(cfg.model, (1, 28, 28))
    cfg = from_dict({"model": {"discriminator": {"name": "mpl"}}})
    with pytest.raises(ConfigError, match=r"model\.discriminator\.name: .*did you mean 'mlp'"):
        build_models(cfg.model, (1, 28, 28))


def test_unknown_objective_is_a_config_error():
    with pytest.raises(ConfigError, match=r"objective\.name: unknown objective 'nss'; did you mean 'ns'"):
        build_objective(ObjectiveConfig(name="nss"))
