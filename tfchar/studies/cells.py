"""The cells study (Collins et al. 2016): LSTM, GRU and vanilla RNN at equal parameter count, same budget.

Example:
    rows = run_cells(Path("docs/study"), Setup(chars=1_500_000))   # docs/study/cells.{md,csv,png}
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable

from tfchar.core import config as config_lib
from tfchar.core.choices import CELLS
from tfchar.data.corpus import load_corpus
from tfchar.studies.corpora import corpus_name
from tfchar.studies.runs import Setup, params_of, run_study, size_for_params


def run_cells(out_dir: Path, setup: Setup, source: str = "tfds:tiny_shakespeare", cells=CELLS,
              runs_dir: Path | None = None, log: Callable[[str], None] = print) -> list[dict]:
    """LSTM, GRU and vanilla RNN at the parameter count of `setup` (its cell); writes cells.{md,csv,png}."""
    vocab_size = len(load_corpus(config_lib.load_config(None, [f"--data.source={source}"]).data).vocab)
    target = params_of(setup.cell, setup.rnn_size, setup.num_layers, setup.embedding_dim, vocab_size)
    plans = []
    for cell in cells:
        size = size_for_params(cell, target, setup.num_layers, setup.embedding_dim, vocab_size)
        cell_setup = Setup(**{**asdict(setup), "cell": cell, "rnn_size": size})
        params = params_of(cell, size, setup.num_layers, setup.embedding_dim, vocab_size)
        plans.append((f"{cell}-{setup.num_layers}x{size}", corpus_name(source), source, cell_setup, "stateful",
                      {"params": params}))
    return run_study("cells", out_dir, runs_dir, log, lambda work: plans)
