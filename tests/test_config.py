"""gankit.config: defaults, YAML loading, type and range checks, dotted overrides, resume rules."""
from __future__ import annotations

import pytest

from gankit.config import (Config, ConfigError, apply_overrides, describe, from_dict, load,
                           parse_override, read_yaml, resume_conflicts)
from gankit.models import build_models


def test_defaults_load_and_match_the_documentation():
    cfg = from_dict({})
    assert isinstance(cfg, Config)
    assert cfg.data.name == "mnist10k"
    assert cfg.model.generator == {"name": "dcgan"}
    assert cfg.optim.lr_g == 2e-4 and cfg.optim.betas_g == [0.5, 0.999]
    assert cfg.train.steps == 10_000 and cfg.train.epochs is None
    # every field is documented once and `describe` lists it with its default
    rows = {key: (default, help_text) for key, default, help_text in describe()}
    assert rows["optim.lr_g"][0] == 2e-4
    assert rows["model.generator"][0] == {"name": "dcgan"}
    assert all(help_text for _, help_text in rows.values())
    assert set(rows) == {f"{section}.{name}" for section, sub in cfg.to_dict().items() for name in sub}


def test_default_mutable_fields_are_not_shared():
    a, b = from_dict({}), from_dict({})
    a.model.generator["width"] = 3
    a.optim.betas_g.append(0.1)
    assert b.model.generator == {"name": "dcgan"}
    assert b.optim.betas_g == [0.5, 0.999]


def test_empty_yaml_file_gives_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load(path) == from_dict({})


def test_unknown_key_names_it_and_suggests_the_closest():
    with pytest.raises(ConfigError) as err:
        from_dict({"optim": {"lr_gg": 1e-3}})
    msg = str(err.value)
    assert "'optim.lr_gg'" in msg
    assert "did you mean 'optim.lr_g'" in msg


def test_unknown_section_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown key 'optimm'.*did you mean 'optim'"):
        from_dict({"optimm": {}})


def test_unknown_key_without_close_match_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        from_dict({"train": {"zzzzzz": 1}})
    assert "did you mean" not in str(err.value)
    assert "batch_size" in str(err.value)


@pytest.mark.parametrize("raw, key", [
    ({"train": {"batch_size": "big"}}, "train.batch_size"),
    ({"train": {"batch_size": 1.5}}, "train.batch_size"),
    ({"train": {"batch_size": True}}, "train.batch_size"),
    ({"log": {"progress": "yes please"}}, "log.progress"),
    ({"data": {"name": 3}}, "data.name"),
    ({"optim": {"lr_g": "fast"}}, "optim.lr_g"),
    ({"optim": {"betas_g": 0.5}}, "optim.betas_g"),
    ({"model": {"generator": "dcgan"}}, "model.generator"),
    ({"train": "fast"}, "train"),
])
def test_wrong_type_is_refused_naming_the_key(raw, key):
    with pytest.raises(ConfigError) as err:
        from_dict(raw)
    assert key in str(err.value)


def test_yaml_1e_minus_4_string_is_coerced_to_float(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr_g: 1e-4\n  lr_d: 3e-4\n")
    assert read_yaml(path)["optim"]["lr_g"] == "1e-4"  # what PyYAML (YAML 1.1) produces
    cfg = load(path)
    assert cfg.optim.lr_g == pytest.approx(1e-4) and isinstance(cfg.optim.lr_g, float)
    assert cfg.optim.lr_d == pytest.approx(3e-4)


def test_integral_float_is_accepted_for_int_and_int_for_float():
    cfg = from_dict({"train": {"batch_size": 32.0, "ema_decay": 0}})
    assert cfg.train.batch_size == 32 and isinstance(cfg.train.batch_size, int)
    assert cfg.train.ema_decay == 0.0 and isinstance(cfg.train.ema_decay, float)


@pytest.mark.parametrize("raw, key", [
    ({"optim": {"lr_g": -1e-4}}, "optim.lr_g"),
    ({"optim": {"lr_d": 0}}, "optim.lr_d"),
    ({"train": {"batch_size": 0}}, "train.batch_size"),
    ({"data": {"normalize": "zero_one"}}, "data.normalize"),
    ({"model": {"init": "kaiming"}}, "model.init"),
    ({"data": {"channels": 2}}, "data.channels"),
    ({"objective": {"label_smoothing": 0.5}}, "objective.label_smoothing"),
    ({"train": {"ema_decay": 1.0}}, "train.ema_decay"),
    ({"optim": {"betas_g": [0.5, 1.0]}}, "optim.betas_g"),
    ({"optim": {"betas_d": [0.5]}}, "optim.betas_d"),
    ({"model": {"generator": {"name": None}}}, "model.generator.name"),
])
def test_out_of_range_values_are_refused(raw, key):
    with pytest.raises(ConfigError) as err:
        from_dict(raw)
    assert key in str(err.value)


def test_negative_lr_message():
    with pytest.raises(ConfigError, match=r"optim\.lr_g must be > 0"):
        from_dict({"optim": {"lr_g": -0.1}})


def test_nullable_fields_accept_null():
    cfg = from_dict({"train": {"steps": None, "max_seconds": 5}, "data": {"resolution": None}})
    assert cfg.train.steps is None and cfg.train.max_seconds == 5.0


def test_parse_override_reads_values_as_yaml():
    assert parse_override("optim.lr_g=1e-4") == (["optim", "lr_g"], "1e-4")
    assert parse_override("train.steps=7") == (["train", "steps"], 7)
    assert parse_override("optim.betas_g=[0.0, 0.9]") == (["optim", "betas_g"], [0.0, 0.9])
    assert parse_override("train.epochs=null") == (["train", "epochs"], None)
    assert parse_override("train.epochs=") == (["train", "epochs"], None)
    assert parse_override("data.name=a=b") == (["data", "name"], "a=b")
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("optim.lr_g")
    with pytest.raises(ConfigError, match="empty key"):
        parse_override("optim..lr_g=1")
    with pytest.raises(ConfigError, match="cannot parse"):
        parse_override("optim.betas_g=[0.5")


def test_dotted_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  generator: {name: dcgan, width: 8}\noptim: {lr_g: 2.0e-4}\n")
    cfg = load(path, ["optim.lr_g=1e-4", "model.generator.width=16", "optim.betas_d=[0.0, 0.9]",
                      "model.discriminator={name: mlp, widths: [64, 32]}", "train.steps=3"])
    assert cfg.optim.lr_g == pytest.approx(1e-4)
    assert cfg.model.generator == {"name": "dcgan", "width": 16}
    assert cfg.optim.betas_d == [0.0, 0.9]
    assert cfg.model.discriminator == {"name": "mlp", "widths": [64, 32]}
    assert cfg.train.steps == 3


def test_overrides_do_not_modify_the_input_and_create_sections():
    raw = {"train": {"steps": 5}}
    out = apply_overrides(raw, ["train.steps=6", "data.limit=10"])
    assert raw == {"train": {"steps": 5}}
    assert out == {"train": {"steps": 6}, "data": {"limit": 10}}


def test_override_through_a_value_is_refused():
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"data": {"name": "ring"}}, ["data.name.x=1"])


def test_override_of_unknown_key_is_refused_with_suggestion(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("")
    with pytest.raises(ConfigError, match="did you mean 'train.batch_size'"):
        load(path, ["train.batchsize=3"])


def test_unknown_model_arch_arg_is_refused_with_suggestion():
    cfg = from_dict({"model": {"generator": {"name": "dcgan", "widht": 16}}})  # checked by the model
    with pytest.raises(ConfigError) as err:
        build_models(cfg.model, (1, 28, 28))
    assert "'model.generator.widht'" in str(err.value)
    assert "did you mean 'model.generator.width'" in str(err.value)


def test_unknown_discriminator_arg_and_wrong_type():
    cfg = from_dict({"model": {"discriminator": {"name": "mlp", "widths": [8], "dropuot": 0.1}}})
    with pytest.raises(ConfigError, match="did you mean 'model.discriminator.dropout'"):
        build_models(cfg.model, (1, 28, 28))
    cfg = from_dict({"model": {"generator": {"name": "dcgan", "width": "wide"}}})
    with pytest.raises(ConfigError, match="model.generator.width must be int"):
        build_models(cfg.model, (1, 28, 28))


def test_read_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        read_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_yaml(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        read_yaml(listy)


def test_resume_conflicts_lists_changed_non_resumable_keys():
    saved = from_dict({}).to_dict()
    current = from_dict({"optim": {"lr_g": 1e-3}, "model": {"latent_dim": 8},
                         "train": {"steps": 99, "max_seconds": 3.0, "device": "cpu"},
                         "log": {"every": 1, "progress": False}, "checkpoint": {"keep": 9},
                         "data": {"root": "elsewhere"}})
    conflicts = resume_conflicts(saved, current)
    assert len(conflicts) == 2
    assert any(c.startswith("optim.lr_g:") and "0.0002" in c and "0.001" in c for c in conflicts)
    assert any(c.startswith("model.latent_dim:") for c in conflicts)


def test_resume_conflicts_empty_for_only_resumable_changes():
    saved = from_dict({}).to_dict()
    current = from_dict({"train": {"steps": 123, "max_seconds": 1.5, "epochs": 2.0, "threads": 1},
                         "log": {"sample_every": 0, "tensorboard": False, "plot": False},
                         "data": {"download": True, "num_workers": 2}, "checkpoint": {"every": 1}})
    assert resume_conflicts(saved, current) == []
    assert resume_conflicts(saved, from_dict({})) == []


def test_resume_conflicts_sees_nested_model_changes():
    saved = from_dict({"model": {"generator": {"name": "dcgan", "width": 8}}}).to_dict()
    current = from_dict({"model": {"generator": {"name": "dcgan", "width": 16}}})
    (conflict,) = resume_conflicts(saved, current)
    assert conflict.startswith("model.generator:")


def test_override_inside_default_model_spec_keeps_its_name():
    cfg = from_dict(apply_overrides({}, ["model.generator.width=16"]))
    assert cfg.model.generator == {"name": "dcgan", "width": 16}


def test_resume_treats_a_key_the_checkpoint_lacks_as_its_default():
    # a checkpoint written before a field existed ran with that field's default
    saved = from_dict({}).to_dict()
    del saved["data"]["stacked_size"]
    assert resume_conflicts(saved, from_dict({})) == []
    (conflict,) = resume_conflicts(saved, from_dict({"data": {"stacked_size": 10}}))
    assert conflict == "data.stacked_size: checkpoint has 60000, config has 10"


def test_fuzzed_yaml_configs_are_refused_in_one_line_or_load(tmp_path):
    """1,000 random byte mutations of a preset config: each loads as a valid Config or raises one
    ConfigError line naming the file or key (never another exception or a hang)."""
    import random
    import time
    from pathlib import Path

    from gankit.config import Config, ConfigError, load

    text = (Path(__file__).resolve().parents[1] / "configs" / "ring.yaml").read_bytes()
    rng = random.Random(16)
    path = tmp_path / "fuzzed.yaml"
    outcomes = {"refused": 0, "loaded": 0}
    for _ in range(1000):
        raw = bytearray(text)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(raw))
            raw[pos] = rng.choice([rng.randrange(256), ord(rng.choice("[]{}&*!:-,'\"#|>%@ \n0.e"))])
        path.write_bytes(bytes(raw))
        t0 = time.process_time()  # CPU time: a busy shared machine must not fail it
        try:
            cfg = load(path)
        except ConfigError as exc:
            assert "\n" not in str(exc) and str(exc).startswith("config: "), str(exc)
            outcomes["refused"] += 1
        else:
            assert isinstance(cfg, Config)
            outcomes["loaded"] += 1
        assert time.process_time() - t0 < 10
    assert outcomes["refused"] > 100 and outcomes["loaded"] > 10, outcomes
