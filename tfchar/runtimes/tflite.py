"""The TFLite route: a .tflite export run by LiteRT (`ai_edge_litert`), builtin ops only.

`TFLiteRuntime` runs a file on the LiteRT interpreter; `interpreter_chunks` and `compiled_model_chunks` wrap a
model's `generate_chunk` signature for the host loop of `chunked` (the second through LiteRT's CompiledModel
API, which allocates every buffer once: the signature's shapes are all static).

Example:
    runtime = TFLiteRuntime("saved_models/tiny_shakespeare/model.tflite")
    runtime.generate(runtime.vocab.encode("ROMEO:"), 100, seed=7)   # the same text as every other route
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from tfchar.core.errors import CheckpointError
from tfchar.core.vocab import Vocab
from tfchar.runtimes.base import ExportedRuntime, first_line, missing_signatures, vocab_of
from tfchar.runtimes.chunked import ChunkSignature

CHUNK = "generate_chunk"


class TFLiteRuntime(ExportedRuntime):
    """A tfchar .tflite file, run on the CPU with no delegate.

    Args:
        path: the .tflite file; config: the export's `Config`, if known.
    """

    kind = "tflite"

    def __init__(self, path, config=None):
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=1)
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
        self._chunks = interpreter_chunks(self.interpreter, self.vocab, f"{path} (LiteRT interpreter)")

    def describe(self) -> str:
        return f"{self.path} (TFLite step)"

    def step(self, token, state):
        r = self._step(token=np.asarray(token, np.int32), state=np.asarray(state, np.float32))
        return r["logits"], r["state"]

    def chunks(self) -> ChunkSignature | None:
        return self._chunks

    def generate_one(self, prime, length, temperature, top_k, top_p, seed) -> np.ndarray:
        return self._generate(prime=np.asarray(prime, np.int32), length=np.int32(length),
                              temperature=np.float32(temperature), top_k=np.int32(top_k),
                              top_p=np.float32(top_p), seed=np.int32(seed))["codepoints"]


def interpreter_chunks(interpreter: Interpreter, vocab: Vocab, name: str, key: str = CHUNK) -> ChunkSignature | None:
    """The `key` signature of a LiteRT interpreter as a checked `ChunkSignature`; None if the model has none."""
    if key not in interpreter.get_signature_list():
        return None
    runner = interpreter.get_signature_runner(key)
    details = runner.get_input_details()
    return ChunkSignature(runner, details["prime"]["shape"][0], details["state"]["shape"][1], vocab, name)


def compiled_model_chunks(path, vocab: Vocab) -> ChunkSignature:
    """`generate_chunk` of a .tflite file through LiteRT's CompiledModel API on the CPU, its buffers made once."""
    from ai_edge_litert.compiled_model import CompiledModel  # loads LiteRT's accelerator registry: only when asked

    model = CompiledModel.from_file(str(path))
    index = model.get_signature_index(CHUNK)
    if index < 0:
        raise CheckpointError(f"{path} has no {CHUNK} signature: re-export it with python -m tfchar.export RUN_DIR")
    names = model.get_signature_list()[CHUNK]
    inputs = dict(zip(names["inputs"], model.create_input_buffers(index)))
    outputs = dict(zip(names["outputs"], model.create_output_buffers(index)))
    details = model.get_output_tensor_details(CHUNK)
    shapes = {k: (d["shape"], np.dtype(d["dtype"])) for k, d in details.items()}

    def call(**values):
        for k, v in values.items():
            inputs[k].write(np.asarray(v).reshape(-1))
        model.run_by_name(CHUNK, inputs, outputs)
        return {k: outputs[k].read(int(np.prod(shape)), dtype).reshape(shape) for k, (shape, dtype) in shapes.items()}

    ins = model.get_input_tensor_details(CHUNK)
    return ChunkSignature(call, ins["prime"]["shape"][0], ins["state"]["shape"][1], vocab,
                          f"{path} (LiteRT CompiledModel, CPU)")
