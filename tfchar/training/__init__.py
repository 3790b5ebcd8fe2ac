"""Library: training (`trainer.fit` and its steps, schedules, signals, distribution, logs) and `run.run`, what
`python -m tfchar.fit` calls."""
