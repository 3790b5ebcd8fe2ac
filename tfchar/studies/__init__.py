"""Library: reproducible comparison studies (`python -m tfchar.study`): training schemes (`schemes`) and cells
at equal size (`cells`), each a list of `runs.train_run`s written out by `tables`."""
