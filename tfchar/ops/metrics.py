"""The one summary of a score: nats per character, bits per character and perplexity.

Example:
    summary(1234.5, 1000)  # {"nats": 1.2345, "bpc": 1.781, "perplexity": 3.437, "chars": 1000}
"""

from __future__ import annotations

import math

LN2 = math.log(2.0)


def bpc(nats: float) -> float:
    """Bits per character from nats per character."""
    return nats / LN2


def summary(nats_sum: float, count: int) -> dict:
    """{"nats", "bpc", "perplexity", "chars"} from a sum of nats over `count` scored characters."""
    nats = nats_sum / max(1, count)
    return {"nats": nats, "bpc": bpc(nats), "perplexity": math.exp(min(nats, 700.0)), "chars": count}
