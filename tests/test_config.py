import dataclasses
import json
import tomllib
import typing
from pathlib import Path

import pytest

from cs336.errors import CS336Error
from cs336.training.config import DataConfig, ModelConfig, OptimConfig, TrainConfig, apply_overrides, load_config, resolve_path

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, text: str) -> Path:
    p = tmp_path / "run.toml"
    p.write_text(text)
    return p


def test_toml_tables_fill_their_dataclasses_and_the_rest_stays_default(tmp_path):
    cfg = load_config(write(tmp_path, 'name = "x"\nmax_steps = 7\n[model]\nd_model = 64\nnum_heads = 4\n[optim]\nbetas = [0.8, 0.9]\n'))
    assert cfg.name == "x" and cfg.max_steps == 7 and cfg.total_steps == 7
    assert cfg.model.d_model == 64 and cfg.model.num_layers == ModelConfig().num_layers
    assert cfg.optim.betas == (0.8, 0.9) and isinstance(cfg.optim.betas, tuple)


@pytest.mark.parametrize(
    "override, field, expected",
    [
        ("optim.lr=3e-3", ("optim", "lr"), 3e-3),
        ("optim.lr=1", ("optim", "lr"), 1.0),  # an int literal is fine for a float field
        ("model.fused=true", ("model", "fused"), True),
        ("optim.betas=[0.5, 0.6]", ("optim", "betas"), (0.5, 0.6)),
        ("name=bare_word", ("name",), "bare_word"),
        ('name="quoted word"', ("name",), "quoted word"),
        ("optim.grad_clip=0", ("optim", "grad_clip"), 0.0),
        ("optim.cosine_iters=none", ("optim", "cosine_iters"), None),
        ("model.silu_d_ff=2048", ("model", "silu_d_ff"), 2048),
        ("batch_size=64", ("batch_size",), 64),
        ("data.train={data_dir}/x.npy", ("data", "train"), "{data_dir}/x.npy"),
    ],
)
def test_overrides_are_parsed_by_the_field_type(tmp_path, override, field, expected):
    cfg = load_config(write(tmp_path, "max_steps = 1\n"), [override])
    value = cfg
    for part in field:
        value = getattr(value, part)
    assert value == expected and type(value) is type(expected)


def test_setting_one_run_length_on_the_command_line_replaces_the_files():
    cfg = load_config(ROOT / "configs" / "tinystories.toml", ["max_steps=5"])
    assert cfg.max_steps == 5 and cfg.max_tokens is None and cfg.total_steps == 5
    cfg = load_config(ROOT / "configs" / "tinystories.toml", ["max_minutes=1.5"])
    assert cfg.max_minutes == 1.5 and cfg.total_steps is None


@pytest.mark.parametrize(
    "text, overrides, words",
    [
        ("max_steps = 1\nbogus = 2\n", [], ["bogus", "batch_size", "max_steps"]),
        ("max_steps = 1\n[optim]\nlrr = 2\n", [], ["optim.lrr", "lr", "min_lr", "weight_decay"]),
        ("max_steps = 1\n[extra]\nx = 1\n", [], ["extra", "model", "optim"]),
        ("max_steps = 1\n", ["optim.lrr=1"], ["optim.lrr", "warmup_iters"]),
        ("max_steps = 1\n", ["nosuch=1"], ["nosuch", "grad_accum_steps"]),
        ("max_steps = 1\n", ["model=1"], ["model", "table"]),
        ("max_steps = 1\n", ["a.b.c=1"], ["a.b.c"]),
        ("max_steps = 1\n", ["lr"], ["key=value"]),
    ],
)
def test_unknown_keys_are_errors_that_list_the_valid_ones(tmp_path, text, overrides, words):
    with pytest.raises(CS336Error) as e:
        load_config(write(tmp_path, text), overrides)
    assert all(w in str(e.value) for w in words), str(e.value)


@pytest.mark.parametrize(
    "override, key",
    [
        ("optim.lr=fast", "optim.lr"),
        ("model.d_model=1.5", "model.d_model"),
        ("model.fused=1", "model.fused"),
        ("batch_size=true", "batch_size"),
        ("optim.betas=[0.9]", "optim.betas"),
        ("optim.betas=0.9", "optim.betas"),
        ("name=3", "name"),
        ("max_steps=[1]", "max_steps"),
    ],
)
def test_values_of_the_wrong_type_name_the_key(tmp_path, override, key):
    with pytest.raises(CS336Error, match=key.replace(".", r"\.")):
        load_config(write(tmp_path, "max_steps = 1\n"), [override])


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["model.num_heads=5"], ["divisible", "num_heads"]),
        (["model.num_heads=0"], ["model.num_heads=0", "positive"]),
        (["model.num_heads=-2"], ["model.num_heads=-2", "positive"]),
        (["model.d_model=0"], ["model.d_model=0", "positive"]),
        (["model.d_ff=0"], ["model.d_ff=0", "positive"]),
        (["model.num_layers=-1"], ["model.num_layers=-1"]),
        (["model.d_model=96", "model.num_heads=32"], ["RoPE", "even"]),
        (["model.rope_theta=0"], ["model.rope_theta", "positive"]),
        (["batch_size=10", "grad_accum_steps=3"], ["batch_size", "grad_accum_steps"]),
        (["model.norm=layer"], ["model.norm"]),
        (["nan_policy=ignore"], ["nan_policy"]),
        (["dtype=float16"], ["dtype"]),
        (["device=tpu"], ["device"]),
        (["optim.betas=[0.9, 1.0]"], ["betas"]),
        (["max_steps=0"], ["max_steps", "positive"]),
        (["max_steps=none"], ["exactly one"]),
        (["peak_tflops=0"], ["peak_tflops=0", "positive"]),
        (["peak_tflops=-989"], ["peak_tflops=-989", "positive"]),
        (["peak_tflops=inf"], ["peak_tflops=inf", "positive"]),
        (["peak_tflops=fast"], ["peak_tflops=fast", "measure"]),
        (["optim.decay_on=gains"], ["decay_on", "matrices"]),
    ],
)
def test_invalid_values_are_rejected_with_the_reason(tmp_path, overrides, words):
    with pytest.raises(CS336Error) as e:
        load_config(write(tmp_path, "max_steps = 1\n"), overrides)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_two_run_lengths_in_one_file_are_an_error(tmp_path):
    with pytest.raises(CS336Error, match="exactly one"):
        load_config(write(tmp_path, "max_steps = 1\nmax_tokens = 100\n"))


def test_missing_or_malformed_files_are_clear_errors(tmp_path):
    with pytest.raises(CS336Error, match="not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(CS336Error, match="not valid TOML"):
        load_config(write(tmp_path, "max_steps = \n"))


def test_every_optional_field_defaults_to_none_so_toml_can_omit_it():
    for cls in (TrainConfig, ModelConfig, OptimConfig, DataConfig):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if type(None) in typing.get_args(hints[f.name]):
                assert f.default is None, f"{cls.__name__}.{f.name}"


def test_dict_json_and_toml_forms_round_trip_exactly(tmp_path):
    cfg = load_config(ROOT / "configs" / "tinystories.toml", ["optim.cosine_iters=5000", "model.silu_d_ff=none", "run_dir=runs/x"])
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert TrainConfig.from_dict(tomllib.loads(cfg.to_toml())) == cfg
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    assert load_config(tmp_path / "config.json") == cfg  # a run's saved config reloads as a config


def test_a_config_with_every_field_set_reloads_equal_from_its_toml(tmp_path):
    """A run's config.toml is how it is rerun, so every field of every section must survive it."""
    cfg = TrainConfig.from_dict({
        "name": 'ablation "ü" 🙂', "run_dir": "runs/a b", "seed": 7, "batch_size": 12, "grad_accum_steps": 3,
        "max_minutes": 1.5, "eval_interval": 7, "eval_batches": 3, "log_interval": 2, "checkpoint_interval": 9,
        "keep_checkpoints": 4, "device": "cuda:1", "dtype": "bfloat16", "compile": True, "threads": 2, "tf32": False,
        "nan_policy": "skip", "max_nan_skips": 5, "wandb": True, "eval_all": True, "wandb_project": "p", "peak_tflops": 312.5, "ensemble": 3,
        "model": {"vocab_size": 300, "context_length": 48, "d_model": 48, "num_layers": 3, "num_heads": 6, "d_ff": 96,
                  "rope_theta": 5e5, "norm": "post", "position": "nope", "ffn": "silu", "silu_d_ff": 200,
                  "qk_norm": True, "logit_softcap": 15.0, "zero_init_output": True,
                  "tie_embeddings": True, "value_residual": True, "residual_scalars": True, "dropout": 0.1, "fused": True},
        "optim": {"lr": 3e-3, "min_lr": 1e-5, "warmup_iters": 7, "cosine_iters": 900, "betas": [0.8, 0.99], "eps": 1e-9,
                  "weight_decay": 0.05, "grad_clip": 0.5, "name": "muon", "muon_lr": 0.05, "muon_momentum": 0.9,
                  "muon_weight_decay": 0.01, "muon_adjust_lr_fn": "match_rms_adamw", "ns_dtype": "float32",
                  "decay_on": "matrices"},
        "data": {"train": "{data_dir}/tinystories/train.npy", "valid": "{data_dir}/tinystories/valid.npy", "dtype": "uint32"},
    })
    unset = {"model", "optim", "data", "max_steps", "max_tokens"}  # tables, and the other run lengths (None)
    for section, default in [(cfg, TrainConfig()), (cfg.model, ModelConfig()), (cfg.optim, OptimConfig()), (cfg.data, DataConfig())]:
        for f in dataclasses.fields(default):
            assert f.name in unset or getattr(section, f.name) != getattr(default, f.name), f"{f.name} is left at its default"
    (tmp_path / "config.toml").write_text(cfg.to_toml(), encoding="utf-8")
    assert load_config(tmp_path / "config.toml") == cfg


def test_tinystories_config_is_the_handouts_reference_run():
    cfg = load_config(ROOT / "configs" / "tinystories.toml")
    m = cfg.model
    assert (m.vocab_size, m.context_length, m.d_model, m.d_ff, m.num_layers, m.num_heads, m.rope_theta) == (10_000, 256, 512, 1344, 4, 16, 10_000.0)
    assert cfg.max_tokens == 327_680_000
    assert cfg.total_steps * cfg.batch_size * m.context_length == 327_680_000


def test_the_owt_cpu_config_differs_from_the_tinystories_one_only_in_its_data():
    """Notebook 09 compares the two corpora with one model: nothing but the name and the data may differ."""
    ts, owt = (load_config(ROOT / "configs" / f"{name}.toml") for name in ("tinystories_cpu", "owt_cpu"))
    assert dataclasses.replace(owt, name=ts.name, data=ts.data) == ts
    assert owt.data.train.endswith("runs/data/owt_cpu/train.npy") and owt.data.valid.endswith("runs/data/owt_cpu/valid.npy")


def test_demo_config_trains_on_a_wall_clock_budget():
    cfg = load_config(ROOT / "configs" / "demo.toml")
    assert cfg.max_minutes and cfg.max_minutes <= 3 and cfg.total_steps is None


def test_max_tokens_rounds_up_to_whole_steps():
    cfg = TrainConfig.from_dict({"max_tokens": 1000, "batch_size": 2, "model": {"context_length": 100}})
    assert cfg.tokens_per_step == 200 and cfg.total_steps == 5
    cfg = TrainConfig.from_dict({"max_tokens": 1001, "batch_size": 2, "model": {"context_length": 100}})
    assert cfg.total_steps == 6


def test_data_dir_placeholder_expands_to_the_data_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("CS336_DATA_DIR", str(tmp_path))
    assert resolve_path("{data_dir}/a/b.npy") == tmp_path.resolve() / "a" / "b.npy"
    assert resolve_path("rel/b.npy") == Path("rel/b.npy")


def test_apply_overrides_does_not_modify_its_input():
    d = {"optim": {"lr": 1.0}}
    assert apply_overrides(d, ["optim.lr=2"]) == {"optim": {"lr": 2}}
    assert d == {"optim": {"lr": 1.0}}
