"""TFLite conversion of the generator's signatures (builtin ops only): the exporter's files, and the routes that
run a Keras checkpoint or a lone SavedModel through TFLite kernels in this process (the .tflite file's text
and speed).

Example:
    model = to_tflite("saved_models/x/saved_model", ["generate_chunk", "vocabulary"])  # flatbuffer bytes
"""

from __future__ import annotations

import tensorflow as tf


def to_tflite(saved_model_dir, signature_keys, int8: bool = False) -> bytes:
    """A SavedModel's signatures as a TFLite flatbuffer with builtin ops only (int8: dynamic-range quantized
    weights, float activations)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=list(signature_keys))
    return _convert(converter, int8)


def function_tflite(function, trackable) -> bytes:
    """One concrete function of `trackable` (e.g. a generator's `generate_chunk`) as a TFLite flatbuffer."""
    return _convert(tf.lite.TFLiteConverter.from_concrete_functions([function], trackable), False)


def _convert(converter, int8: bool) -> bytes:
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()
