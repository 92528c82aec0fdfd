from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from litcache.config import (
    ModelConfig,
    PipelineConfig,
    builtin_pipelines,
    load_pipeline,
    parse_override,
    read_pipeline_file,
    save_resolved,
)
from litcache.errors import ConfigError
from litcache.models import build_model


def test_defaults_round_trip_through_a_dict() -> None:
    cfg = PipelineConfig()
    data = cfg.to_dict()
    assert isinstance(data["data"]["mean"], list)  # plain YAML/JSON types, no tuples
    assert PipelineConfig.from_dict(data) == cfg


def test_non_default_config_round_trips_through_a_dict_and_a_file(tmp_path: Path) -> None:
    cfg = load_pipeline("tiny", ["data.mean=[0.5, 0.5, 0.5]", "train.beta=0.75", "store.codec=blosc-zstd"])
    assert PipelineConfig.from_dict(cfg.to_dict()) == cfg
    path = tmp_path / "resolved.yaml"
    save_resolved(cfg, path)
    assert load_pipeline(str(path)) == cfg


def test_configs_are_frozen() -> None:
    cfg = PipelineConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"trian": {"epochs": 1}}, "'trian'"),
        ({"train": {"epoch": 3}}, "'train.epoch'"),
        ({"store": {"dtype": "float16", "compression": "zstd"}}, "'store.compression'"),
    ],
)
def test_unknown_key_is_an_error_naming_it(data: dict, key: str) -> None:
    with pytest.raises(ConfigError, match="unknown config key") as exc:
        PipelineConfig.from_dict(data)
    assert key in str(exc.value)


def test_unknown_key_message_lists_the_valid_keys() -> None:
    with pytest.raises(ConfigError) as exc:
        PipelineConfig.from_dict({"train": {"epoch": 3}})
    assert "epochs" in str(exc.value) and "temperature" in str(exc.value)


def test_unknown_key_in_a_pipeline_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("extract:\n  veiws: 3\n")
    with pytest.raises(ConfigError, match="extract.veiws"):
        load_pipeline(str(path))


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("train.epochs=3", {"train": {"epochs": 3}}),
        ("data.flip=false", {"data": {"flip": False}}),
        ("train.lr=0.5", {"train": {"lr": 0.5}}),
        ("data.mean=[0.5, 0.5, 0.5]", {"data": {"mean": [0.5, 0.5, 0.5]}}),
        (" store.codec = none", {"store": {"codec": "none"}}),
        ("data.source=a=b", {"data": {"source": "a=b"}}),
        ("description=", {"description": ""}),
    ],
)
def test_parse_override(item: str, expected: dict) -> None:
    assert parse_override(item) == expected


@pytest.mark.parametrize("item", ["train.epochs", "=3", "train.epochs: 3", "data.mean=[0.5, "])
def test_malformed_override_is_an_error(item: str) -> None:
    with pytest.raises(ConfigError, match="--set"):
        parse_override(item)


def test_exponent_floats_without_a_dot_are_numbers(tmp_path: Path) -> None:
    # YAML 1.1 reads 5e-4 as a string; in a float setting it means the number, from --set and from a file alike
    cfg = load_pipeline("tiny", ["teacher.weight_decay=5e-4", "train.lr=1E-2", "kd.lr=+2.5e-3"])
    assert (cfg.teacher.weight_decay, cfg.train.lr, cfg.kd.lr) == (5e-4, 1e-2, 2.5e-3)
    path = tmp_path / "p.yaml"
    path.write_text("train:\n  weight_decay: 1e-4\n")
    assert load_pipeline(str(path)).train.weight_decay == 1e-4
    with pytest.raises(ConfigError, match="train.lr must be float"):
        load_pipeline("tiny", ["train.lr=fast"])  # other strings still fail, naming the key


def test_precedence_defaults_then_file_then_overrides(tmp_path: Path) -> None:
    defaults = load_pipeline(None)
    assert defaults == PipelineConfig()
    tiny = load_pipeline("tiny")
    assert (defaults.teacher.model.name, tiny.teacher.model.name) == ("resnet20", "resnet8")  # the file beats defaults
    assert tiny.teacher.lr == defaults.teacher.lr  # what the file does not set keeps its default
    over = load_pipeline("tiny", ["teacher.model=resnet14", "extract.views=5", "extract.views=7"])
    assert over.teacher.model.name == "resnet14"  # --set beats the file
    assert over.extract.views == 7  # the last --set wins
    assert over.teacher.epochs == tiny.teacher.epochs  # a sibling of an overridden key survives the merge

    path = tmp_path / "mine.yaml"
    path.write_text("# a user's pipeline\nextract:\n  views: 3\ntrain:\n  beta: 0.5\n")
    mine = load_pipeline(str(path), ["train.beta=0.25"])
    assert mine.name == "mine"
    assert mine.extract.views == 3 and mine.extract.batch_size == defaults.extract.batch_size
    assert mine.train.beta == 0.25


def test_int_is_accepted_for_a_float_and_lists_for_tuples() -> None:
    cfg = load_pipeline(None, ["train.lr=1", "data.std=[1, 1, 1]"])
    assert isinstance(cfg.train.lr, float) and cfg.train.lr == 1.0
    assert cfg.data.std == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("item", "key"),
    [
        ("extract.views=0", "extract.views"),
        ("store.dtype=bfloat16", "store.dtype"),
        ("store.codec=gzip", "store.codec"),
        ("store.bitround_keepbits=24", "store.bitround_keepbits"),
        ("store.bitround_keepbits=11", "store.bitround_keepbits"),
        ("train.beta=1.5", "train.beta"),
        ("train.temperature=0", "train.temperature"),
        ("train.lr=0", "train.lr"),
        ("train.baseline_lr=-0.1", "train.baseline_lr"),
        ("teacher.schedule=linear", "teacher.schedule"),
        ("teacher.epochs=abc", "teacher.epochs"),
        ("teacher.epochs=true", "teacher.epochs"),
        ("teacher.epochs=2.5", "teacher.epochs"),
        ("data.pad=-1", "data.pad"),
        ("data.mean=[0.5, 0.5]", "data.mean"),
        ("data.source=7", "data.source"),
        ("train=3", "train"),
    ],
)
def test_invalid_values_raise_config_error_naming_the_key(item: str, key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_pipeline("tiny", [item])
    assert key in str(exc.value)


def test_builtin_pipelines_all_load() -> None:
    names = builtin_pipelines()
    assert "tiny" in names
    for name in names:
        cfg = load_pipeline(name)
        assert cfg.name == name
        assert cfg.description, f"pipeline {name} has no description"
        for spec in (cfg.teacher.model, cfg.train.student, *cfg.students):
            build_model(spec)  # the models it names exist


def test_unknown_pipeline_name_lists_the_builtins() -> None:
    with pytest.raises(ConfigError, match="no pipeline named 'nosuch'") as exc:
        load_pipeline("nosuch")
    assert "tiny" in str(exc.value)


def test_missing_pipeline_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_pipeline_file(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize(("text", "match"), [("train: [1, 2\n", "not valid YAML"), ("- 1\n- 2\n", "mapping")])
def test_malformed_pipeline_file_is_an_error(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_pipeline(str(path))


def test_a_model_is_a_builtin_name_or_a_factory_mapping() -> None:
    cfg = load_pipeline(
        "tiny",
        [
            "train.student={factory: 'torchvision.models:resnet18', kwargs: {zero_init_residual: true}}",
            "students=[resnet8, {factory: 'my_models:build', sections: [a.0:2, a.2:4]}]",
        ],
    )
    assert cfg.train.student == ModelConfig(factory="torchvision.models:resnet18", kwargs={"zero_init_residual": True})
    assert cfg.students[0] == ModelConfig(name="resnet8") and cfg.students[1].sections == ("a.0:2", "a.2:4")
    assert cfg.factories() == {"torchvision.models:resnet18", "my_models:build"}
    plain = cfg.to_dict()
    assert plain["students"][0] == "resnet8" and plain["train"]["student"]["kwargs"] == {"zero_init_residual": True}
    assert PipelineConfig.from_dict(plain) == cfg  # the round trip


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("train.student=resnet9", "unknown built-in model 'resnet9'"),
        ("train.student={name: resnet8, factory: 'a:b'}", "not both or neither"),
        ("train.student={factory: torchvision.models.resnet18}", "must look like package.module:function"),
        ("train.student={factory: 'a:b', colour: red}", "unknown config key 'train.student.colour'"),
        ("train.alpha=0.9", "'train.alpha' was replaced by train.label_weight and train.soft_weight"),
    ],
)
def test_bad_model_specs_and_renamed_keys_are_config_errors(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_pipeline("tiny", [item])


@pytest.mark.parametrize(
    "name",
    [
        "cifar10-resnet110-resnet20",
        "cifar10-resnet110-resnet56",
        "cifar10-resnet110-students",
        "cifar10-resnet56-resnet20",
    ],
)
def test_paper_pipelines_keep_the_reference_kd_weights(name: str) -> None:
    # LIT's reference code: alpha = 0.95 on the labels, 0.05 on the soft targets, T = 6, beta = 0.75
    cfg = load_pipeline(name)
    for stage in (cfg.train, cfg.kd):
        assert (stage.label_weight, stage.soft_weight, stage.temperature) == (0.95, 0.05, 6.0)
    assert cfg.train.beta == 0.75


@pytest.mark.parametrize(
    ("name", "rates"),
    [
        # BENCHMARKS.md, ResNet-20 -> ResNet-8: sections 0.05, KD pass 0.04, baselines 0.4
        ("cifar10-resnet20-resnet8", (0.05, 0.04, 0.4)),
        # ResNet-56 -> ResNet-20, the quickstart's pair: sections 0.4, KD pass 0.02, baselines 0.1
        ("quickstart", (0.4, 0.02, 0.1)),
    ],
)
def test_cpu_pipelines_use_the_measured_weights_and_rates(name: str, rates: tuple[float, float, float]) -> None:
    cfg = load_pipeline(name)
    for stage in (cfg.train, cfg.kd):  # label 0.05 / soft 0.95 led on both CPU tables
        assert (stage.label_weight, stage.soft_weight) == (0.05, 0.95)
    assert (cfg.train.lr, cfg.kd.lr, cfg.train.baseline_lr) == rates


def test_the_quickstart_is_the_pair_and_form_where_lit_led() -> None:
    # three blocks per section (ResNet-56 -> ResNet-20), IR sections then the KD pass, 2 + 1 epochs, 3 views
    cfg = load_pipeline("quickstart")
    assert (cfg.teacher.model.name, cfg.train.student.name, cfg.train.beta) == ("resnet56", "resnet20", 0.0)
    assert (cfg.train.epochs, cfg.kd.epochs, cfg.extract.views, cfg.train.weight_decay) == (2, 1, 3, 5e-4)


def test_store_input_and_bits_are_checked() -> None:
    from litcache.config import StoreConfig

    assert (StoreConfig().input, StoreConfig().bits) == ("pixels", 4)
    with pytest.raises(ConfigError, match="store.input must be one of"):
        StoreConfig(input="auto")
    with pytest.raises(ConfigError, match="store.bits must be 0"):
        StoreConfig(bits=9)
