"""The Keras route: a run's checkpoint (or a model in memory) scored with the Keras layers and sampled with
an in-process copy of the exported generator: converted to TFLite once (`tflite_sampling`: the .tflite file's
kernels, so its text and speed), or run as a TensorFlow graph (no conversion: for weights that change, as in
fit's preview samples).

`KerasScorer` is how fit validates: a stateful copy of the weights reads `streams` contiguous rows of the
text (the progressive layout of `ops.streams`), so the training model's state is never touched. With
`streams=1` every character but the first is scored with its whole left context.

Example:
    runtime = open_run("runs/shakespeare")            # its best checkpoint
    runtime.score(ids, streams=8)["bpc"]              # = fit's validation figure
    runtime.generate(runtime.vocab.encode("ROMEO:"), 100, temperature=0.8, seed=7)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from ai_edge_litert.interpreter import Interpreter

from tfchar.nn.checkpoint import load_run, load_weights
from tfchar.nn.generator import CharGenerator
from tfchar.nn.models import build_from_config, reset_states
from tfchar.ops.loss import token_nll
from tfchar.ops.metrics import summary
from tfchar.ops.streams import fitting_streams, progressive
from tfchar.runtimes.base import GraphSteps, Runtime
from tfchar.runtimes.chunked import ChunkSignature
from tfchar.runtimes.convert import function_tflite
from tfchar.runtimes.tflite import interpreter_chunks

IN_PROCESS_CHUNK = 256  # code points per in-process generate_chunk call: fewer calls, the same text (any K)


class KerasScorer:
    """Scores id arrays with a stateful copy of a model's weights; the model it copies is never touched.

    Args:
        model_cfg: `config.ModelConfig` of the model to score.
        vocab_size: V.
        streams: parallel contiguous rows of text (batch size of the scoring model).
        chunk: time steps per call.
    """

    def __init__(self, model_cfg, vocab_size: int, streams: int = 8, chunk: int = 256):
        self.model_cfg, self.vocab_size, self.streams, self.chunk = model_cfg, vocab_size, streams, chunk
        self.model = build_from_config(model_cfg, vocab_size, batch_size=streams, seq_length=None, stateful=True)
        model = self.model

        @tf.function(input_signature=[tf.TensorSpec((streams, None), tf.int32)] * 2, reduce_retracing=True)
        def step(x, y):
            return tf.reduce_sum(token_nll(y, model(x, training=False)))  # sum over [B, T]

        self._step = step

    def score(self, weights_from, ids: np.ndarray, limit: int = 0, progress=None) -> dict:
        """`ops.metrics.summary` of `ids` under the weights of `weights_from` (a Keras model; None: the
        weights already loaded into `self.model`); `limit`: at most that many characters (`ops.streams`);
        `progress(done, total)` is called after each chunk."""
        if weights_from is not None:
            self.model.set_weights(weights_from.get_weights())
        if fitting_streams(len(ids), self.streams) != self.streams:  # shorter than a character per row: one row
            one = KerasScorer(self.model_cfg, self.vocab_size, streams=1, chunk=self.chunk)
            return one.score(self.model, ids, limit, progress)
        reset_states(self.model)
        total, count = progressive(lambda x, y: float(self._step(x, y)), ids, self.streams, self.chunk, limit,
                                   progress)
        reset_states(self.model)
        return summary(total, count)


class KerasRuntime(Runtime):
    """A Keras char-RNN in this process: scored by its Keras layers, sampled by a `CharGenerator` copy.

    Args:
        model: the Keras model (any batch size; its weights are copied into the generator).
        vocab: its `Vocab`; config: its `Config` (the [model] section builds the scoring copy).
        checkpoint: the checkpoint it was loaded from, if any; path: the run dir or checkpoint named.
        tflite_sampling: sample with the generator converted to TFLite in this process (on first use, a few
            seconds; the exported .tflite file's text, at its speed); False: run its TensorFlow graph.
    """

    kind = "keras"

    def __init__(self, model, vocab, config, checkpoint=None, path=None, tflite_sampling: bool = False):
        self.model = model
        self.generator = CharGenerator.from_keras(model, vocab, chunk_size=IN_PROCESS_CHUNK)
        super().__init__(vocab, self.generator.state_size, path=path, config=config, checkpoint=checkpoint)
        self._steps = GraphSteps(self.generator.step, self.state_size, self.vocab_size)
        self.tflite_sampling = tflite_sampling
        self._chunks = None

    def describe(self) -> str:
        return f"{self.checkpoint or self.path or 'in-memory model'} (Keras checkpoint)"

    def refresh(self) -> None:
        """Copy the model's current weights into the generator again (the trainer's preview samples)."""
        self.generator.assign_from_keras(self.model)
        if self.tflite_sampling:
            self._chunks = None  # the converted file holds the old weights

    def chunks(self) -> ChunkSignature:
        if self._chunks is None:
            gen = self.generator
            if self.tflite_sampling:
                model = function_tflite(gen.generate_chunk.get_concrete_function(), gen)
                interpreter = Interpreter(model_content=model, num_threads=1)
                key = next(iter(interpreter.get_signature_list()))
                self._chunks = interpreter_chunks(interpreter, self.vocab, f"{self.describe()} via TFLite", key)
            else:
                call = lambda **inputs: gen.generate_chunk(**{k: tf.constant(v) for k, v in inputs.items()})
                self._chunks = ChunkSignature(call, gen.chunk_size, gen.state_size, self.vocab, self.describe())
        return self._chunks

    def step(self, token, state):
        return self._steps.one(token, state)

    def run(self, x, y, state):
        return self._steps.run(x, y, state)

    def score(self, ids, streams: int = 1, chunk: int = 256, limit: int = 0, progress=None) -> dict:
        """fit's own figure: the Keras layers (`KerasScorer`), `streams` rows with the state carried."""
        scorer = KerasScorer(self.config.model, self.vocab_size, streams=streams, chunk=chunk)
        return scorer.score(self.model, ids, limit, progress)


def open_run(path, which: str = "best") -> KerasRuntime:
    """The Keras runtime of a run dir's `best` (or `last`) checkpoint, or of a checkpoint dir."""
    cfg, vocab, ckpt = load_run(path, which)
    model = build_from_config(cfg.model, len(vocab), batch_size=1, seq_length=None, stateful=False)
    load_weights(model, ckpt)
    return KerasRuntime(model, vocab, cfg, checkpoint=ckpt, path=Path(path), tflite_sampling=True)
