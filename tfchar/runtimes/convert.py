"""TFLite conversion of the generator's signatures (builtin ops only): the exporter's files, and the routes that
run a Keras checkpoint or a lone SavedModel through TFLite kernels in this process (the .tflite file's text
and speed).

Example:
    model = to_tflite("saved_models/x/saved_model", ["generate_chunk", "vocabulary"])  # flatbuffer bytes
"""

from __future__ import annotations

import hashlib

import tensorflow as tf
from tensorflow.lite.tools import flatbuffer_utils  # TF's own flatbuffer reader/writer (a tools module)


def to_tflite(saved_model_dir, signature_keys, int8: bool = False) -> bytes:
    """A SavedModel's signatures as a TFLite flatbuffer with builtin ops only (int8: dynamic-range quantized
    weights, float activations)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=list(signature_keys))
    return _convert(converter, int8)


def shared_buffers(model: bytes) -> bytes:
    """The flatbuffer with identical constant buffers stored once.

    The float conversion shares a weight between every signature that reads it; the dynamic-range quantizer
    writes a quantized copy per signature (4 of tfchar's signatures read every weight), which would make
    model_int8.tflite larger than model.tflite. Tensors of any subgraph may point at the same read-only buffer.
    """
    m = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    first, remap = {}, {}
    for i, buf in enumerate(m.buffers):
        if buf.data is None or len(buf.data) == 0:
            continue
        key = hashlib.sha1(bytes(buf.data)).digest()
        remap[i] = first.setdefault(key, i)
    for subgraph in m.subgraphs:
        for tensor in subgraph.tensors:
            tensor.buffer = remap.get(tensor.buffer, tensor.buffer)
    used = {t.buffer for g in m.subgraphs for t in g.tensors} | {md.buffer for md in (m.metadata or [])}
    for i, buf in enumerate(m.buffers):
        if i not in used and buf.data is not None:
            buf.data = None  # no tensor reads it any more
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def function_tflite(function, trackable) -> bytes:
    """One concrete function of `trackable` (e.g. a generator's `generate_chunk`) as a TFLite flatbuffer."""
    return _convert(tf.lite.TFLiteConverter.from_concrete_functions([function], trackable), False)


def _convert(converter, int8: bool) -> bytes:
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if not int8:
        return converter.convert()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return shared_buffers(converter.convert())
