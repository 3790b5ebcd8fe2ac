"""The PyTorch reference: embedding -> `nn.LSTM` -> linear, and the initialisations to compare.

`CharLSTM` is char-rnn's network as torch-rnn and tfchar build it (a learned E-wide embedding instead of
one-hot input). `INIT_CHOICES` lists each way PyTorch's defaults differ from tfchar's Keras layers; each can
be switched to the Keras choice on its own (`keras_init(model, {"lstm", "forget_bias", ...})`):

| part        | PyTorch default                                   | Keras (tfchar)                                  |
| ----------- | ------------------------------------------------- | ----------------------------------------------- |
| lstm        | every weight U(+-1/sqrt(H))                        | kernel glorot-uniform, recurrent orthogonal     |
| forget_bias | b_ih and b_hh, each U(+-1/sqrt(H))                 | one bias: 1 on the forget gate, 0 elsewhere     |
| embedding   | N(0, 1)                                            | U(+-0.05)                                       |
| output      | weight and bias U(+-1/sqrt(H))                     | weight glorot-uniform, bias 0                   |

Both use the gate order i, f, g (cell), o, so a slice of the 4H rows means the same gate in each.
"""

from __future__ import annotations

import math

import torch
from torch import nn

INIT_CHOICES = ("lstm", "forget_bias", "embedding", "output")


class CharLSTM(nn.Module):
    """Embedding(V, E) -> LSTM(E, H) x layers -> Linear(H, V), batch first."""

    def __init__(self, vocab_size: int, hidden: int = 512, layers: int = 2, embedding: int = 64):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embedding)
        self.lstm = nn.LSTM(embedding, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, x: torch.Tensor, state=None):
        """Logits [B, T, V] of int64 ids x [B, T], and the new (h, c) state, each [layers, B, H]."""
        out, state = self.lstm(self.embed(x), state)  # [B, T, H]
        return self.head(out), state


def _glorot_(w: torch.Tensor, fan_in: int, fan_out: int) -> None:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    nn.init.uniform_(w, -bound, bound)


def keras_init(model: CharLSTM, parts) -> CharLSTM:
    """Re-initialise the named parts (a subset of INIT_CHOICES) the way tfchar's Keras layers do."""
    unknown = set(parts) - set(INIT_CHOICES)
    if unknown:
        raise ValueError(f"unknown init parts {sorted(unknown)}: choose from {INIT_CHOICES}")
    lstm, hidden = model.lstm, model.lstm.hidden_size
    with torch.no_grad():
        for layer in range(lstm.num_layers):
            w_ih, w_hh = getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}")  # [4H, in], [4H, H]
            if "lstm" in parts:
                _glorot_(w_ih, fan_in=w_ih.shape[1], fan_out=4 * hidden)  # Keras kernel [in, 4H]
                nn.init.orthogonal_(w_hh)  # Keras recurrent kernel [H, 4H]: orthonormal rows (here: columns)
            if "forget_bias" in parts:
                b_ih, b_hh = getattr(lstm, f"bias_ih_l{layer}"), getattr(lstm, f"bias_hh_l{layer}")  # [4H] each
                b_ih.zero_()
                b_ih[hidden:2 * hidden] = 1.0  # unit_forget_bias
                b_hh.zero_()
        if "embedding" in parts:
            nn.init.uniform_(model.embed.weight, -0.05, 0.05)
        if "output" in parts:
            _glorot_(model.head.weight, fan_in=hidden, fan_out=model.head.out_features)
            model.head.bias.zero_()
    return model


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
