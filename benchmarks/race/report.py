"""The race's output: a header naming the machine, markdown tables, results.json, curve.csv and the plot."""

from __future__ import annotations

import csv
import datetime
import json
import math
import os
import platform
import shutil
import subprocess
from pathlib import Path

LN2 = math.log(2.0)
COLUMNS = ("system", "params", "chars trained", "steps", "train s", "val nats/char", "val bpc", "scored")


def cpu_model() -> str:
    """`lscpu`'s model name (platform.processor() without lscpu)."""
    if shutil.which("lscpu"):
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def header(threads: int) -> str:
    """Date, CPU, cores, threads used and the load average when the race started."""
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {cpu_model()} ({os.cpu_count()} logical CPUs), "
            f"{threads} thread(s) per system, load average at start {load}")


def markdown_table(rows: list) -> str:
    """One line per row: chars in millions, losses to 3 decimals."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "| --- |" + " ---: |" * (len(COLUMNS) - 1)]
    for r in rows:
        lines.append(f"| {r['label']} | {r['params'] / 1e6:.2f} M | {r['chars'] / 1e6:.2f} M | {r['steps']:,} | "
                     f"{r['seconds']:.0f} | {r['nats']:.4f} | {r['nats'] / LN2:.4f} | {r['protocol']} |")
    return "\n".join(lines)


def budget_table(rows: list) -> str:
    """Validation nats/char of each system (rows) at each budget (columns)."""
    budgets = sorted({r["budget"] for r in rows})
    systems = list(dict.fromkeys(r["label"] for r in rows))
    at = {(r["label"], r["budget"]): r["nats"] for r in rows}
    lines = ["| system | " + " | ".join(f"{b / 60:g} min" for b in budgets) + " |",
             "| --- |" + " ---: |" * len(budgets)]
    for s in systems:
        cells = [f"{at[s, b]:.4f}" if (s, b) in at else "" for b in budgets]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_outputs(out: Path, head: str, rows: list, curve: list) -> None:
    """results.json (header, rows, curve), curve.csv and table.md under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"header": head, "rows": rows, "curve": curve}, indent=1))
    with open(out / "curve.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=("system", "seconds", "steps", "chars", "nats", "protocol"))
        w.writeheader()
        for p in curve:
            w.writerow({k: p[k] for k in w.fieldnames})


def plot(curve: list, head: str, path: Path) -> None:
    """Validation nats/char against training seconds, one line per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for system in dict.fromkeys(p["system"] for p in curve):
        pts = sorted((p["seconds"], p["nats"]) for p in curve if p["system"] == system)
        ax.plot([s / 60 for s, _ in pts], [n for _, n in pts], marker="o", markersize=3, label=system)
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel("validation loss (nats/char)")
    ax.set_title("tiny-shakespeare, nanoGPT's split: validation loss against training time", fontsize=10)
    ax.text(0.01, 0.01, head, transform=ax.transAxes, fontsize=6, color="gray")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
