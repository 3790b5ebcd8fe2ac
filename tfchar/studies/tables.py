"""A study's outputs: the table as Markdown and CSV, and validation bpc against training time as a plot.

Example:
    write_table(rows, Path("docs/study"), "cells", CELL_COLUMNS)
    plot(rows, Path("docs/study/cells.png"), "cells: validation bpc vs training time")
    plot_variants(rows, Path("docs/study/recipe.png"), "recipe")   # rows with panel, variant, seed, history
"""

from __future__ import annotations

import csv
import math
from pathlib import Path


SCHEME_COLUMNS = ("scheme", "corpus", "val_bpc", "test_bpc", "wall_s", "train_cps", "progressive_cps",
                  "windowed_cps", "diverged", "max_rise_bpc")
CELL_COLUMNS = ("cell", "rnn_size", "params", "corpus", "val_bpc", "test_bpc", "wall_s", "train_cps",
                "progressive_cps", "windowed_cps", "diverged", "max_rise_bpc")


def _fmt(key: str, value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.0f}" if key.endswith("cps") or key == "wall_s" else f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_table(rows: list[dict], out_dir: Path, name: str, columns) -> None:
    """`name.md` (a markdown table) and `name.csv` (raw numbers) with `columns` of each row."""
    out_dir = Path(out_dir)
    write_csv(rows, out_dir / f"{name}.csv", columns)
    (out_dir / f"{name}.md").write_text(markdown_table(rows, columns), encoding="utf-8")


def write_csv(rows: list[dict], path: Path, columns) -> None:
    """`columns` of each row as CSV (floats rounded to 4 decimals)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([(round(r[c], 4) if isinstance(r.get(c), float) else r.get(c, "")) for c in columns])


def markdown_table(rows: list[dict], columns) -> str:
    """`columns` of each row as a Markdown table, numbers formatted for reading."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(c, r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _pyplot(path: Path, log):
    """matplotlib.pyplot without a display, or None (and a log line) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log(f"matplotlib is not installed: {path} not written (pip install matplotlib)")
        return None
    return plt


def plot(rows: list[dict], path: Path, title: str, log=print) -> bool:
    """Validation bpc against training time, one line per run, one panel per corpus; False if no matplotlib."""
    plt = _pyplot(path, log)
    if plt is None:
        return False
    corpora = list(dict.fromkeys(r["corpus"] for r in rows))
    fig, axes = plt.subplots(1, len(corpora), figsize=(6 * len(corpora), 4.2), squeeze=False)
    for ax, corpus in zip(axes[0], corpora):
        for r in (r for r in rows if r["corpus"] == corpus):
            if r["history"]:
                t, v = zip(*r["history"])
                label = r["run"].split("/")[-1] + (" (diverged)" if r["diverged"] else "")
                ax.plot(t, v, marker="o", markersize=3, label=label)
        ax.set_title(corpus)
        ax.set_xlabel("training time (s, evaluations included)")
        ax.set_ylabel("validation bpc")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_variants(rows: list[dict], path: Path, title: str, log=print) -> bool:
    """Validation bpc against training time: one panel per `panel`, one colour per `variant`, one line style
    per `seed` (the legend names each variant once); False if no matplotlib."""
    plt = _pyplot(path, log)
    if plt is None:
        return False
    panels = list(dict.fromkeys(r["panel"] for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5), squeeze=False)
    styles = ["-", "--", ":", "-."]
    for ax, panel in zip(axes[0], panels):
        mine = [r for r in rows if r["panel"] == panel]
        variants = list(dict.fromkeys(r["variant"] for r in mine))
        seeds = list(dict.fromkeys(r["seed"] for r in mine))
        colours = plt.get_cmap("tab20")
        for r in mine:
            if not r["history"]:
                continue
            t, v = zip(*r["history"])
            k = variants.index(r["variant"])
            first = seeds.index(r["seed"]) == 0
            ax.plot(t, v, styles[seeds.index(r["seed"]) % len(styles)], color=colours(k % 20), marker="o",
                    markersize=2, label=r["variant"] if first else None)
        ax.set_title(panel)
        ax.set_xlabel("training time (s, evaluations included)")
        ax.set_ylabel("validation bpc")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
