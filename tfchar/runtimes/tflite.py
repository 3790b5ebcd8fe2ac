"""The TFLite route: a .tflite export run by the LiteRT interpreter (`ai_edge_litert`), builtin ops only.

Example:
    runtime = TFLiteRuntime("saved_models/tiny_shakespeare/model.tflite")
    runtime.generate(runtime.vocab.encode("ROMEO:"), 100, seed=7)   # the same text as every other route
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from tfchar.core.errors import CheckpointError
from tfchar.runtimes.base import ExportedRuntime, first_line, missing_signatures, vocab_of



class TFLiteRuntime(ExportedRuntime):
    """A tfchar .tflite file, run on the CPU with no delegate.

    Args:
        path: the .tflite file; config: the export's `Config`, if known.
    """

    kind = "tflite"

    def __init__(self, path, config=None):
        try:
            self.interpreter = Interpreter(model_path=str(path))
        except Exception as e:  # ValueError/RuntimeError for a file that is not a TFLite flatbuffer
            raise CheckpointError(f"cannot read {path} as a TFLite model ({first_line(e)}): "
                                  f"re-export it with python -m tfchar.export RUN_DIR") from None
        missing = missing_signatures(self.interpreter.get_signature_list())
        if missing:
            raise CheckpointError(f"{path} has no {missing} signature: it is not a tfchar export; "
                                  f"make one with python -m tfchar.export RUN_DIR")
        v = self.interpreter.get_signature_runner("vocabulary")()
        self._step = self.interpreter.get_signature_runner("step")
        state_size = int(self._step.get_input_details()["state"]["shape_signature"][1])
        super().__init__(vocab_of(v["codepoints"], v["byte_unit"]), state_size, path=path, config=config)
        self._generate = self.interpreter.get_signature_runner("generate")

    def describe(self) -> str:
        return f"{self.path} (TFLite step)"

    def step(self, token, state):
        r = self._step(token=np.asarray(token, np.int32), state=np.asarray(state, np.float32))
        return r["logits"], r["state"]

    def generate_one(self, prime, length, temperature, top_k, top_p, seed) -> np.ndarray:
        return self._generate(prime=np.asarray(prime, np.int32), length=np.int32(length),
                              temperature=np.float32(temperature), top_k=np.int32(top_k),
                              top_p=np.float32(top_p), seed=np.int32(seed))["codepoints"]
