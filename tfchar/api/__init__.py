"""The public Python API (`tfchar.load`, `tfchar.train`, `tfchar.export`, `tfchar.tune`): thin shells over the
library, with the command lines' checks and one-line errors. `tfchar/__init__.py` loads these names lazily."""
