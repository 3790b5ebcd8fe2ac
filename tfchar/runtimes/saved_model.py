"""The SavedModel route: an export's `saved_model/` loaded with `tf.saved_model.load` (no tfchar code needed),
its `step` signature run in a graph loop. It samples with its `generate_chunk` through TFLite kernels, the
fastest route that gives the same text: the export's own `model.tflite` next to it, else that signature
converted in this process (a few seconds, once).

Example:
    runtime = SavedModelRuntime("saved_models/tiny_shakespeare/saved_model")
    runtime.generate(runtime.vocab.encode("ROMEO:"), 100, seed=7)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from tfchar.core.errors import CheckpointError
from tfchar.runtimes.base import ExportedRuntime, GraphSteps, first_line, missing_signatures, vocab_of
from tfchar.runtimes.chunked import ChunkSignature
from tfchar.runtimes.convert import to_tflite
from tfchar.runtimes.tflite import CHUNK, interpreter_chunks


class SavedModelRuntime(ExportedRuntime):
    """A tfchar SavedModel directory (the one holding saved_model.pb).

    Args:
        path: the SavedModel directory; config: the export's `Config`, if known.
    """

    kind = "saved_model"

    def __init__(self, path, config=None):
        try:
            self.loaded = tf.saved_model.load(str(path))
        except Exception as e:  # protobuf, OSError, NotFoundError...: all mean "not a loadable SavedModel"
            raise CheckpointError(f"cannot load SavedModel {path} ({type(e).__name__}: {first_line(e)}): "
                                  f"re-export it with python -m tfchar.export RUN_DIR") from None
        sigs = self.loaded.signatures
        missing = missing_signatures(sigs)
        if missing:
            raise CheckpointError(f"SavedModel {path} has no {missing} signature: it is not a tfchar "
                                  f"export; make one with python -m tfchar.export RUN_DIR")
        v = sigs["vocabulary"]()
        step = sigs["step"]
        super().__init__(vocab_of(v["codepoints"].numpy(), v["byte_unit"].numpy()),
                         step.structured_input_signature[1]["state"].shape[1], path=path, config=config)
        self._steps = GraphSteps(step, self.state_size, self.vocab_size)
        self._generate = sigs["generate"]
        self._has_chunks = CHUNK in sigs
        self._chunks = None

    def describe(self) -> str:
        return f"{self.path} (SavedModel step)"

    def chunks(self) -> ChunkSignature | None:
        if self._has_chunks and self._chunks is None:
            sibling = self.path.parent / "model.tflite"
            if self.path.name == "saved_model" and sibling.is_file():
                self._chunks = self._matching(Interpreter(model_path=str(sibling), num_threads=1), f"{sibling} (LiteRT)")
            if self._chunks is None:
                model = to_tflite(self.path, [CHUNK])
                self._chunks = interpreter_chunks(Interpreter(model_content=model, num_threads=1), self.vocab,
                                                  f"{self.path} (converted to TFLite in this process)")
        return self._chunks

    def _matching(self, interpreter, name) -> ChunkSignature | None:
        """The sibling file's generate_chunk if it is this model's (same vocabulary and state), else None."""
        chunks = interpreter_chunks(interpreter, self.vocab, name)
        if chunks is None or chunks.state_size != self.state_size or "vocabulary" not in interpreter.get_signature_list():
            return None
        v = interpreter.get_signature_runner("vocabulary")()
        return chunks if vocab_of(v["codepoints"], v["byte_unit"]) == self.vocab else None

    def step(self, token, state):
        return self._steps.one(token, state)

    def run(self, x, y, state):
        return self._steps.run(x, y, state)

    def generate_one(self, prime, length, temperature, top_k, top_p, seed) -> np.ndarray:
        out = self._generate(prime=tf.constant(prime, tf.int32), length=tf.constant(length, tf.int32),
                             temperature=tf.constant(temperature, tf.float32), top_k=tf.constant(top_k, tf.int32),
                             top_p=tf.constant(top_p, tf.float32), seed=tf.constant(seed, tf.int32))
        return out["codepoints"].numpy()
