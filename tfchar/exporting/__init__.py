"""Library: export a run as SavedModel + TFLite files and measure what was exported (`exporter`)."""
