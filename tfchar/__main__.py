"""`tfchar VERB ...`: the same verbs as `python -m tfchar.VERB ...`."""

from __future__ import annotations

import importlib
import sys

VERBS = ("fit", "sample", "export", "evaluate", "tune", "study", "demo")


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(f"usage: tfchar {{{','.join(VERBS)}}} [args...]  (same as python -m tfchar.VERB)")
        return 0 if len(sys.argv) >= 2 else 2
    verb = sys.argv[1]
    if verb not in VERBS:
        print(f"tfchar: error: unknown command {verb!r}; use one of: {', '.join(VERBS)}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(f"tfchar.{verb}")
    except ModuleNotFoundError:
        print(f"tfchar: error: the {verb} command is not available in this version", file=sys.stderr)
        return 2
    return module.main(sys.argv[2:]) or 0


if __name__ == "__main__":
    sys.exit(main())
