"""tf.distribute: MirroredStrategy on two logical CPUs matches one device; a two-worker cluster on loopback."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import tiny_overrides

# Logical CPU devices must be configured before TensorFlow initialises its runtime: use a fresh process.
MIRRORED_RUN = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from pathlib import Path
    from tfchar.training.run_dir import resolve_config
    from tfchar.training.trainer import fit
    cfg, run_dir = resolve_config(None, sys.argv[1:])
    fit(cfg, run_dir, log=lambda s: None)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def history(run_dir):
    return [json.loads(l) for l in (run_dir / "history.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_mirrored_on_two_cpus_matches_one_device(small_text_file, tmp_path):
    runs = {}
    for strategy in ("default", "mirrored"):
        run_dir = tmp_path / strategy
        args = tiny_overrides(small_text_file, run_dir, **{"train.strategy": strategy, "train.eval_every": 1,
                                                           "train.max_steps": 4, "train.sample_length": 0,
                                                           "model.implementation": "keras"})
        p = subprocess.run([sys.executable, "-c", MIRRORED_RUN, *args], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        runs[strategy] = [h["val_loss"] for h in history(run_dir)]
    assert len(runs["default"]) == 4
    # Same data, same initial weights: replica r trains rows r*B/2.. of each batch and carries their state, so
    # the validation loss after each of the first steps equals the single-device run's (up to summation order).
    assert runs["mirrored"] == pytest.approx(runs["default"], abs=1e-5)
    assert runs["default"][0] != pytest.approx(runs["default"][-1], abs=1e-3)  # the steps did change the model


@pytest.mark.slow
def test_two_workers_on_loopback_train_and_checkpoint(small_text_file, tmp_path):
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    run_dir = tmp_path / "mw"
    args = tiny_overrides(small_text_file, run_dir, **{"train.strategy": "multi_worker", "train.max_steps": 6,
                                                       "train.eval_every": 0, "train.sample_length": 0})
    procs = []
    try:
        for index in range(2):
            env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
            procs.append(subprocess.Popen([sys.executable, "-m", "tfchar.fit", *args], env=env, cwd=tmp_path,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert "2 replicas" in outs[0][0]
    ckpts = [c for c in (run_dir / "checkpoints").iterdir() if not c.is_symlink()]
    assert len(ckpts) == 1 and ckpts[0].name.startswith("epoch")
    assert history(run_dir)[-1]["step"] == 6
