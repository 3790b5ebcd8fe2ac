"""`python -m tfchar.native [--force]`: build the native CPU time loops now and print the library's path.

The fused layers build them on first use anyway (`tfchar.nn.native`); this is for doing it ahead of time
(an image build, a cluster's shared cache) or for seeing why they cannot be built.
"""

from __future__ import annotations

import sys

from tfchar.cli import Parser, guard


def parse_args(argv=None):
    p = Parser("native", __doc__)
    p.add_argument("--force", action="store_true", help="rebuild even if a cached library exists")
    return p.parse_args(argv)


@guard
def main(argv=None) -> int:
    a = parse_args(argv)
    from tfchar.core.errors import TfcharError
    from tfchar.nn import native

    if not native.enabled():
        raise TfcharError("native RNN loops are disabled by TFCHAR_NATIVE=0: unset it to build them")
    try:
        path = native.build(force=a.force)
        native.load()
    except native.BUILD_ERRORS as e:
        raise TfcharError(f"native RNN loops unavailable: {e}") from None
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
