"""Layer 3: one class per way to run a trained model (Keras checkpoint, SavedModel, TFLite), all with the
`Runtime` interface of `base.py`; `load.load_runtime(path)` picks the one a path names."""
