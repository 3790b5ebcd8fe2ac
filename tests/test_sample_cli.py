"""`python -m tfchar.sample`: every route prints the same seeded text; bad input is a one-line error.

Subprocess cases start TensorFlow each (seconds), so they run concurrently and are few; the other cases
call the same entry point (`tfchar.sample.main`) in this process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

from tfchar.runtimes.keras import IN_PROCESS_CHUNK
from tfchar.sampling.sample import sample
from test_exporter import lstm_export  # noqa: F401  (session fixture: a trained run and its export)


# One thread pool each: the processes share two cores.
ENV = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS="1")


def run_all(arg_lists, timeout=300) -> list[subprocess.CompletedProcess]:
    """Run `python -m tfchar.sample ARGS` for each list concurrently; results in order."""
    procs = [subprocess.Popen([sys.executable, "-m", "tfchar.sample", *map(str, args)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, encoding="utf-8", env=ENV) for args in arg_lists]
    results = []
    for args, p in zip(arg_lists, procs):
        out, err = p.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(args, p.returncode, out, err))
    return results


@pytest.mark.slow
def test_every_route_prints_the_same_text(lstm_export):
    r = lstm_export
    seeded = ["--prime", "ROMEO:", "--length", 300, "--temperature", 0.8, "--seed", 7]
    results = run_all([[r.run, *seeded], [r.out, *seeded],
                       [r.out / "model.tflite", *seeded[2:], "--prime", "RO☃MEO:", "--unknown", "skip"]])
    for res in results:
        assert res.returncode == 0, res.stderr[-2000:]
    texts = [res.stdout for res in results]
    assert texts[0].startswith("ROMEO:") and len(texts[0]) == len("ROMEO:") + 300 + 1
    assert texts[0] == texts[1] == texts[2]
    # The SavedModel-dir route, in this process:
    assert sample(r.out / "saved_model", prime="ROMEO:", length=300, temperature=0.8, seed=7,
                  out=False) == [texts[0][:-1]]


def test_greedy_batches_are_identical_across_routes(lstm_export, capsys):
    from tfchar.sample import main

    outputs = []
    for model in (lstm_export.run, lstm_export.out / "model.tflite"):
        main([str(model), "--prime", "ROMEO:", "--length", "200", "--greedy", "--num_samples", "2"])
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    _, first, second = outputs[0].split("--- sample ")
    assert first.startswith("1/2 (seed 123) ---\nROMEO:") and second.startswith("2/2 (seed 124) ---\nROMEO:")
    assert first.split("---\n", 1)[1] == second.split("---\n", 1)[1]  # greedy ignores the seed


def test_stop_ends_each_sample_after_its_first_occurrence_on_every_route(lstm_export, capsys):
    from tfchar.sample import main

    r = lstm_export
    base = ["--prime", "ROMEO:", "--length", "400", "--temperature", "0.9", "--num_samples", "2"]
    main([str(r.out / "model.tflite"), *base])
    whole = capsys.readouterr().out
    for stop in ("\n", "e "):
        printed = []
        for model in (r.run, r.out, r.out / "model.tflite"):
            main([str(model), *base, "--stop", stop])
            printed.append(capsys.readouterr().out)
        assert printed[0] == printed[1] == printed[2], stop
        for full, cut in zip(whole.split("--- sample ")[1:], printed[0].split("--- sample ")[1:]):
            text, got = full.split("---\n", 1)[1][len("ROMEO:"):-1], cut.split("---\n", 1)[1][len("ROMEO:"):-1]
            end = text.find(stop)
            assert got == (text if end < 0 else text[:end + len(stop)]), stop
            assert end >= 0  # the test is about stopping: the stop text must occur in 400 characters


def test_run_dir_route_streams(lstm_export):
    class Recorder:
        def __init__(self):
            self.writes, self.flushes = [], 0

        def write(self, s):
            self.writes.append(s)

        def flush(self):
            self.flushes += 1

    rec = Recorder()
    texts = sample(lstm_export.run, prime="ROMEO:", length=600, seed=7, temperature=0.8, out=rec)
    pieces = 600 // IN_PROCESS_CHUNK  # at least: one write per generate_chunk call
    assert rec.writes[0] == "ROMEO:" and len(rec.writes) >= 1 + pieces >= 3 and rec.flushes >= len(rec.writes)
    assert "".join(rec.writes) == texts[0] + "\n"


@pytest.fixture(scope="module")
def bad_models(lstm_export, tmp_path_factory):
    """A missing path, corrupt files and a TFLite model that is not ours."""
    d = tmp_path_factory.mktemp("bad")
    (d / "garbage.tflite").write_bytes(b"not a flatbuffer at all")
    (d / "bad_saved_model").mkdir()
    (d / "bad_saved_model" / "saved_model.pb").write_bytes(b"\x00garbage")
    double = tf.function(lambda x: {"y": 2.0 * x}, input_signature=[tf.TensorSpec([None], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([double.get_concrete_function()])
    (d / "foreign.tflite").write_bytes(converter.convert())
    run = shutil.copytree(lstm_export.run, d / "run", symlinks=True)
    weights = run / "checkpoints" / "best" / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:1000])
    return d


def check_error(returncode, stdout, stderr, expected, args):
    errors = [line for line in stderr.splitlines() if line.startswith("tfchar: error:")]
    assert returncode == 2 and "Traceback" not in stderr, (args, stderr[-2000:])
    assert len(errors) == 1 and expected in errors[0], (args, stderr[-2000:])
    assert stdout == "", args


@pytest.mark.slow
def test_bad_input_is_a_one_line_error(lstm_export, bad_models):
    cases = [
        ([bad_models / "missing"], "does not exist"),
        ([bad_models / "foreign.tflite"], "no generate/vocabulary signature"),
        ([lstm_export.out / "model.tflite", "--length", 0], "--length 0 must be positive"),
    ]
    for (args, expected), res in zip(cases, run_all([args for args, _ in cases])):
        check_error(res.returncode, res.stdout, res.stderr, expected, args)


def test_more_bad_input_in_process(lstm_export, bad_models, capsys):
    # The same entry point as the subprocess cases above, run in this process to save TensorFlow start-ups.
    from tfchar.sample import main

    tflite = lstm_export.out / "model.tflite"
    cases = [
        ([bad_models / "garbage.tflite"], "cannot read"),
        ([bad_models / "bad_saved_model"], "cannot load SavedModel"),
        ([tflite, "--prime", "ROMEO ☃ ü"], "not in the model's vocabulary: '☃', 'ü'"),
        ([bad_models / "run"], "corrupt"),
        ([tflite, "--temperature", 0], "--greedy"),
        ([tflite, "--temperature", "nan"], "--temperature"),
        ([tflite, "--top_p", 1.5], "--top_p"),
        ([tflite, "--top_p", 0], "--top_p"),
        ([tflite, "--top_k", -1], "--top_k"),
        ([tflite, "--num_samples", 0], "--num_samples"),
        ([tflite, "--length", "many"], "invalid int value"),
        ([tflite, "--unknown", "ignore"], "invalid choice"),
        ([tflite, "--stop", ""], "--stop '' is empty"),
        ([tflite, "--stop", "ROMEO\u2603"], "has 1 character(s) the model never writes: '\u2603'"),
        ([tflite, "--stop", "\\n"], "a backslash is literal: for a newline pass --stop $'\\n'"),
    ]
    for args, expected in cases:
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        captured = capsys.readouterr()
        check_error(exit_info.value.code, captured.out, captured.err, expected, args)
