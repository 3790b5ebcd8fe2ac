"""`tfchar VERB ...`: the same verbs as `python -m tfchar.VERB ...`."""

from __future__ import annotations

import importlib
import sys

VERBS = {"fit": "train a char-RNN on a text", "sample": "print text a model writes",
         "export": "write a run as SavedModel + TFLite files", "evaluate": "score a text: nats/char, bpc",
         "tune": "search hyperparameters with Keras Tuner", "study": "run a comparison study",
         "demo": "serve the in-browser demo", "native": "build the native CPU time loops now"}


def usage() -> str:
    lines = ["usage: tfchar VERB [args...]  (the same as python -m tfchar.VERB; VERB --help for its flags)", ""]
    lines += [f"  {verb:9s} {what}" for verb, what in VERBS.items()]
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(usage())
        return 0 if len(sys.argv) >= 2 else 2
    verb = sys.argv[1]
    if verb not in VERBS:
        print(f"tfchar: error: unknown command {verb!r}; use one of: {', '.join(VERBS)}", file=sys.stderr)
        return 2
    return importlib.import_module(f"tfchar.{verb}").main(sys.argv[2:]) or 0


if __name__ == "__main__":
    sys.exit(main())
