"""Library: `python -m tfchar.sample`'s job (`sample`) and windowed sampling (`windowed`)."""
