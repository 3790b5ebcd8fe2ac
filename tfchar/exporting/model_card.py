"""MODEL_CARD.md of an export: what the model is, what it was trained on and how, how well it does through the
exported files, how to call it, and what it is not for, written from what the exporter knows.

The training facts come from the run dir (config.toml, result.json, history.jsonl); the figures from the
export's metrics; the signature table from the exported functions themselves, so it cannot drift.

Example:
    text = model_card(CardFacts(name="tiny_shakespeare", metrics=metrics, config=cfg, vocab=vocab, run=run_dir,
                                params=model.count_params(), signatures=gen.signatures(), split_sizes={...}))
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from tfchar.core import config as config_lib
from tfchar.core.vocab import Vocab

# What each signature input and output means; dtypes and shapes are read from the exported functions.
MEANINGS = {
    "generate": {"prime": "code points read first (unknown ones skipped; none: as if after token id 0)",
                 "length": "code points to sample", "temperature": "<= 0: greedy (argmax)",
                 "top_k": "keep the k most likely (0: off)", "top_p": "nucleus mass (1: off)",
                 "seed": "same seed, same text on every runtime", "codepoints": "the sampled code points"},
    "generate_until": {"stop": "a code point that ends the text after its first occurrence (-1: none)",
                       "codepoints": "the sampled code points, up to and including the stop"},
    "generate_chunk": {"prime": "code points to read before sampling (the first `prime_length`)",
                       "prime_length": "how many of `prime` to read (0 to K)",
                       "length": "code points to sample in this call (0 to K)",
                       "state": "recurrent state: zeros to start, then what the last call returned",
                       "carry": "generator state and last token: zeros to start, then what the last call returned",
                       "stop": "stop after this code point (-1: none); the next call continues after it",
                       "codepoints": "K slots; the first `valid` are the new code points",
                       "valid": "how many code points are new (fewer than `length` when the stop came)"},
    "step": {"token": "token ids (as vocab.json), one per stream", "state": "packed recurrent state (zeros to start)",
             "logits": "unnormalized log-probabilities of the next token"},
    "vocabulary": {"codepoints": "the code point (byte value for byte models) of each token id",
                   "byte_unit": "1 for byte models (decode the output as UTF-8)"},
}
FILES = {"saved_model": "saved_model/", "tflite": "model.tflite", "tflite_int8": "model_int8.tflite", "keras": "model.keras"}


@dataclass
class CardFacts:
    """Everything the card says, gathered by the exporter."""

    name: str  # the export dir's name
    metrics: dict  # the export's metrics.json
    config: config_lib.Config  # the run's config
    vocab: Vocab
    run: Path  # the run dir (config.toml, result.json, history.jsonl)
    params: int  # trainable parameters
    signatures: dict  # name -> exported concrete function
    split_sizes: dict = field(default_factory=dict)  # train/val/test -> characters (bytes)


def model_card(f: CardFacts) -> str:
    """The card as Markdown."""
    sections = [_summary(f), _data(f), _architecture(f), _training(f), _evaluation(f), _signatures(f), _limits(f)]
    return "\n\n".join(s.strip() for s in sections) + "\n"


def _summary(f: CardFacts) -> str:
    m = f.config.model
    return f"""# {f.name}: a character-level {m.cell.upper()} language model

A {m.num_layers}-layer {m.cell.upper()} with {m.rnn_size} units per layer, trained by tfchar on
{_source(f.config.data.source)} to predict the next {_unit(f.vocab)}. It writes text in the style of that corpus,
one {_unit(f.vocab)} at a time, on a server, a phone or in a web page, from the files in this directory:

```bash
python -m tfchar.sample {f.name} --prime "..." --length 500 --temperature 0.8 --seed 7
```"""


def _data(f: CardFacts) -> str:
    d = f.config.data
    sizes = ", ".join(f"{k} {v:,}" for k, v in f.split_sizes.items()) or "not recorded"
    shown = "".join(_visible(c) for c in f.vocab.tokens)
    return f"""## Training text

- Source: {_source(d.source)} (unit: {d.unit}; splits in {_unit(f.vocab)}s: {sizes})
- Vocabulary: {len(f.vocab)} {_unit(f.vocab)}s: `{shown}`
- Text outside the vocabulary cannot be read or written: a prime with other characters is an error (or they
  are skipped with `--unknown skip`)."""


def _architecture(f: CardFacts) -> str:
    m, x = f.config.model, f.metrics
    return f"""## Architecture

| | |
|---|---|
| cell | {m.cell} (Keras gate order; GRU: `reset_after`) |
| layers x units | {m.num_layers} x {m.rnn_size} |
| embedding | {m.embedding_dim} |
| dropout (training only) | {m.dropout} |
| parameters | {f.params:,} |
| state size S | {x["state_size"]} floats |"""


def _training(f: CardFacts) -> str:
    result, history = _read_json(f.run / "result.json"), _read_history(f.run / "history.jsonl")
    lines = [f"- Command: `{training_command(f.config)}`",
             f"- Checkpoint exported: `{f.metrics.get('checkpoint', '?')}`"]
    if result:
        lines.append(f"- {result.get('steps', '?'):,} steps ({result.get('epochs', 0):.2f} epochs) in "
                     f"{_duration(result.get('wall_time_s'))}; best validation loss "
                     f"{result.get('best_val_loss', math.nan):.4f} nats/char ({result.get('best_val_bpc', math.nan):.3f} bpc)")
    else:
        lines.append("- Steps and wall time: not recorded (the run has no result.json: it did not finish)")
    if history:
        first = history[0]
        lines.append(f"- Validation curve ({len(history)} evaluations): {first.get('val_bpc', math.nan):.3f} bpc at step "
                     f"{first.get('step', '?')}, {min(h.get('val_bpc', math.inf) for h in history):.3f} at best")
    return "## Training\n\n" + "\n".join(lines)


def _evaluation(f: CardFacts) -> str:
    m = f.metrics
    if "test_bpc" not in m and "val_bpc" not in m:
        return "## Evaluation\n\nbpc was not measured (the training text could not be loaded at export)."
    rows = [("validation", "SavedModel", m.get("val_bpc")), ("test", "SavedModel", m.get("test_bpc")),
            ("test", "model.tflite", m.get("tflite_test_bpc")), ("test", "model_int8.tflite", m.get("int8_test_bpc"))]
    table = "\n".join(f"| {split} | {route} | {v:.4f} |" for split, route, v in rows if v is not None)
    sizes = ", ".join(f"{FILES.get(k, k)} {v / 1e6:.2f} MB" for k, v in m.get("sizes", {}).items())
    int8 = ""
    if "int8_size_ratio" in m and "int8_bpc_change" in m:
        int8 = (f"\n\nint8 (dynamic-range quantized weights): {m['int8_size_ratio']:.2f}x the float file's size, "
                f"{m['int8_bpc_change']:+.4f} bpc on the test split; it samples different text than the float "
                f"files (its weights differ) but is just as reproducible from the seed.")
    return f"""## Evaluation

Bits per {_unit(f.vocab)} of the exported files ({m.get('bpc_method', '')}):

| split | file | bpc |
|---|---|---:|
{table}

Files: {sizes}.{int8}"""


def _signatures(f: CardFacts) -> str:
    rows = []
    for name, fn in f.signatures.items():
        if name == "serving_default":
            continue
        meaning = {**MEANINGS["generate"], **MEANINGS.get(name, {})}
        args, kwargs = fn.structured_input_signature
        inputs = {**{s.name: s for s in args}, **kwargs}
        ins = "<br>".join(f"`{k}` {_spec(s)}: {meaning.get(k, '')}" for k, s in inputs.items()) or "none"
        outs = "<br>".join(f"`{k}` {_spec(s)}: {meaning.get(k, '')}" for k, s in fn.structured_outputs.items())
        rows.append(f"| `{name}` | {ins} | {outs} |")
    return """## Signatures (SavedModel and TFLite alike)

`generate` is also `serving_default`. `generate_chunk` has static shapes only (LiteRT.js, LiteRT's
CompiledModel, accelerators): chained calls give exactly `generate_until`'s code points. `?` is any size.

| signature | inputs | outputs |
|---|---|---|
""" + "\n".join(rows)


def _limits(f: CardFacts) -> str:
    return f"""## Intended use and limits

- For generating text in the style of {_source(f.config.data.source)}: demos, teaching, games, on-device
  text generation without a server.
- It is a character model of one corpus. It knows nothing beyond that text: its output is plausible-looking
  pastiche, not facts, and it cannot follow instructions.
- It can reproduce passages of its training text verbatim, so treat its output as you would that text
  (copyright, personal data).
- It inherits the corpus' language, era and biases; it has not been filtered or aligned in any way.
- Only the {len(f.vocab)} {_unit(f.vocab)}s above exist for it."""


# ============================================================================================ helpers

def training_command(cfg: config_lib.Config) -> str:
    """`python -m tfchar.fit` with a --section.key=value flag for every training key that differs from the default."""
    default, flags = config_lib.to_dict(config_lib.Config()), []
    for section, values in config_lib.to_dict(cfg).items():
        if section in ("export", "tune"):
            continue
        for key, value in values.items():
            if value != default.get(section, {}).get(key) and key not in ("run_dir", "resume", "cache_dir"):
                flags.append(f"--{section}.{key}={_flag_value(value)}")
    return " ".join(["python -m tfchar.fit", *flags])


def _flag_value(value) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return f"'{text}'" if any(c in text for c in " \"'$&|;<>()*?[]#~\\") or not text else text


def _spec(spec) -> str:
    dims = ",".join("?" if d is None else str(d) for d in spec.shape.as_list()) if spec.shape.rank is not None else "?"
    return f"{spec.dtype.name}[{dims}]"


def _visible(c: str) -> str:
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r", "`": "\\`"}.get(c, c if c.isprintable() else f"\\x{ord(c):02x}")


def _unit(vocab: Vocab) -> str:
    return "byte" if vocab.unit == "byte" else "character"


def _source(source: str) -> str:
    return f"the TFDS dataset `{source[5:]}`" if source.startswith("tfds:") else f"`{Path(source).name}`"


def _duration(seconds) -> str:
    if seconds is None:
        return "an unrecorded time"
    return f"{seconds / 60:.1f} min ({seconds:.0f} s)" if seconds >= 60 else f"{seconds:.0f} s"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _read_history(path: Path) -> list[dict]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a killed run
    return out
