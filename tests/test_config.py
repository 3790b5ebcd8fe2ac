import dataclasses

import pytest

from tfchar.core import config as C
from tfchar.core.errors import ConfigError


def test_defaults_follow_char_rnn():
    cfg = C.Config()
    assert (cfg.model.cell, cfg.model.rnn_size, cfg.model.num_layers, cfg.model.dropout) == ("lstm", 128, 2, 0.0)
    assert (cfg.data.batch_size, cfg.data.seq_length) == (50, 50)
    assert (cfg.train.learning_rate, cfg.train.grad_clip) == (2e-3, 5.0)
    assert cfg.data.source == "tfds:tiny_shakespeare"


def test_issue_keys_exist():
    names = {f"{s.name}.{f.name}" for s in dataclasses.fields(C.Config) for f in dataclasses.fields(getattr(C.Config(), s.name))}
    for key in ["data.source", "data.batch_size", "data.seq_length", "data.val_frac", "data.test_frac", "data.unit",
                "model.cell", "model.rnn_size", "model.num_layers", "model.dropout", "model.embedding_dim",
                "train.epochs", "train.max_steps", "train.learning_rate", "train.grad_clip", "train.scheme",
                "train.eval_every", "train.run_dir", "train.resume", "train.init_from", "train.seed",
                "data.tfds_feature", "export.on_finish"]:
        assert key in names


def test_every_field_is_documented():
    for s in dataclasses.fields(C.Config):
        for f in dataclasses.fields(getattr(C.Config(), s.name)):
            assert len(f.metadata.get("help", "")) > 10, f"{s.name}.{f.name} has no help text"


def test_pipeline_then_command_line_overrides(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text('[model]\nrnn_size = 256\ndropout = 0.25\n[train]\nlearning_rate = 1\n')
    cfg = C.load_config(p, ["--model.rnn_size=64", "--train.resume", "true"])
    assert cfg.model.rnn_size == 64          # command line wins
    assert cfg.model.dropout == 0.25         # pipeline kept
    assert cfg.train.learning_rate == 1.0    # TOML int accepted for a float key
    assert cfg.train.resume is True


@pytest.mark.parametrize("args, names", [
    (["--model.rnn_size=0"], "model.rnn_size"),
    (["--model.dropout=1.5"], "model.dropout"),
    (["--data.seq_length=0"], "data.seq_length"),
    (["--model.nope=1"], "model.nope"),
    (["--model.rnn_size=big"], "model.rnn_size"),
    (["--model.cell=transformer"], "model.cell"),
    (["--train.scheme=magic"], "train.scheme"),
    (["--train.resume=maybe"], "train.resume"),
    (["--nosection.key=1"], "nosection"),
    (["rnn_size=3"], "rnn_size=3"),
    (["--train.time_budget=ten minutes"], "train.time_budget"),
    (["--train.time_budget=-1"], "train.time_budget"),
    (["--train.eval_period=5x"], "train.eval_period"),
    (["--train.lr_schedule=linear"], "train.lr_schedule"),
    (["--train.lr_final_ratio=2"], "train.lr_final_ratio"),
    (["--train.adam_epsilon=0"], "train.adam_epsilon"),
    (["--train.adam_beta2=1"], "train.adam_beta2"),
    (["--train.weight_decay=-0.1"], "train.weight_decay"),
    (["--train.warmup_steps=-3"], "train.warmup_steps"),
    (["--model.input_dropout=1"], "model.input_dropout"),
    (["--model.init=xavier"], "model.init"),
    (["--model.embedding_init=zeros"], "model.embedding_init"),
])
def test_bad_values_name_the_key(args, names):
    with pytest.raises(ConfigError, match=names.replace(".", r"\.")):
        C.load_config(None, args)


def test_toml_type_errors_name_the_key(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text('[model]\nrnn_size = "256"\n')
    with pytest.raises(ConfigError, match=r"model\.rnn_size expects int"):
        C.load_config(p)
    p.write_text('[modle]\nrnn_size = 256\n')
    with pytest.raises(ConfigError, match=r"unknown section \[modle\]"):
        C.load_config(p)
    p.write_text('[model\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        C.load_config(p)


def test_resolved_config_round_trips(tmp_path):
    cfg = C.load_config(None, ["--model.cell=gru", "--data.source=some text.txt", "--train.name=a"])
    C.save(cfg, tmp_path / "config.toml")
    assert C.load_resolved(tmp_path / "config.toml") == cfg


def test_shipped_pipelines_are_valid():
    for p in sorted(C.Path(__file__).resolve().parents[1].glob("pipelines/*.toml")):
        C.load_config(p)


@pytest.mark.parametrize("text, seconds", [("600", 600.0), ("10m", 600.0), ("90s", 90.0), ("1h", 3600.0),
                                           ("1h30m", 5400.0), ("2.5m", 150.0), ("0", 0.0)])
def test_durations_take_seconds_or_units(text, seconds):
    assert C.load_config(None, [f"--train.time_budget={text}"]).train.time_budget == seconds


def test_durations_in_toml_are_numbers_or_strings_and_round_trip(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text('[train]\ntime_budget = "10m"\neval_period = 90\n')
    cfg = C.load_config(p)
    assert (cfg.train.time_budget, cfg.train.eval_period) == (600.0, 90.0)
    C.save(cfg, tmp_path / "config.toml")
    assert C.load_resolved(tmp_path / "config.toml") == cfg
    p.write_text('[train]\ntime_budget = true\n')
    with pytest.raises(ConfigError, match=r"train\.time_budget = True is not a duration"):
        C.load_config(p)
