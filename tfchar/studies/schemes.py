"""The schemes study (De Boom et al. 2018): every training scheme on every corpus at the same budget.

Example:
    rows = run_schemes(Path("docs/study"), Setup(chars=1_500_000))   # docs/study/schemes.{md,csv,png}
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from tfchar.core.choices import SCHEMES
from tfchar.studies.corpora import STDLIB_BYTES, default_corpora
from tfchar.studies.runs import Setup, run_study


def run_schemes(out_dir: Path, setup: Setup, corpora: dict[str, str] | None = None, schemes=SCHEMES,
                runs_dir: Path | None = None, stdlib_bytes: int = STDLIB_BYTES, names=("tiny_shakespeare", "python"),
                log: Callable[[str], None] = print) -> list[dict]:
    """Every training scheme on every corpus at the same budget; writes schemes.{md,csv,png} into out_dir.

    Args:
        out_dir: where schemes.md, schemes.csv and schemes.png go.
        setup: the shared architecture and budget.
        corpora: {name: data.source}; default: `default_corpora(names=names)`: tiny-shakespeare and
            `stdlib_bytes` of stdlib Python source.
        schemes: training schemes to compare.
        runs_dir: keep the runs there (None: a temporary dir, deleted afterwards).
    """
    return run_study("schemes", out_dir, runs_dir, log, lambda work: [
        (f"{corpus}/{scheme}", corpus, source, setup, scheme, {})
        for corpus, source in (corpora or default_corpora(work, stdlib_bytes, names)).items() for scheme in schemes])
