"""Library: `python -m tfchar.evaluate`'s job (score a split or a file under any runtime) and dynamic evaluation."""
