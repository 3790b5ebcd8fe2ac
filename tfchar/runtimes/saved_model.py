"""The SavedModel route: an export's `saved_model/` loaded with `tf.saved_model.load` (no tfchar code needed),
its `step` signature run in a graph loop, its `generate` signature sampling in the graph.

Example:
    runtime = SavedModelRuntime("saved_models/tiny_shakespeare/saved_model")
    runtime.generate(runtime.vocab.encode("ROMEO:"), 100, seed=7)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfchar.core.errors import CheckpointError
from tfchar.runtimes.base import ExportedRuntime, GraphSteps, first_line, missing_signatures, vocab_of



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

    def describe(self) -> str:
        return f"{self.path} (SavedModel step)"

    def step(self, token, state):
        return self._steps.one(token, state)

    def run(self, x, y, state):
        return self._steps.run(x, y, state)

    def generate_one(self, prime, length, temperature, top_k, top_p, seed) -> np.ndarray:
        out = self._generate(prime=tf.constant(prime, tf.int32), length=tf.constant(length, tf.int32),
                             temperature=tf.constant(temperature, tf.float32), top_k=tf.constant(top_k, tf.int32),
                             top_p=tf.constant(top_p, tf.float32), seed=tf.constant(seed, tf.int32))
        return out["codepoints"].numpy()
