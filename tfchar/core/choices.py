"""Every choice list of tfchar, defined once: the config's validation, the command lines' flags and the
library all read them from here."""

CELLS = ("lstm", "gru", "rnn")  # recurrent cells (GRU: Keras reset_after, the cuDNN variant)
UNITS = ("char", "byte")  # what a token is: a Unicode code point, or a raw byte
SCHEMES = ("stateful", "windows", "overlap", "single_loss")  # how training text is cut (De Boom et al. 2018)
SPLITS = ("train", "val", "test")  # splits of a corpus
IMPLEMENTATIONS = ("auto", "keras", "fused")  # which layers run the recurrence (same weights either way)
INITS = ("keras", "torch")  # initial weights of the recurrent and output layers: Keras's or PyTorch's defaults
EMBEDDING_INITS = ("uniform", "normal")  # uniform +-0.05 (Keras's Embedding) or N(0, 1) (PyTorch's nn.Embedding)
LR_SCHEDULES = ("char-rnn", "cosine")  # per-epoch decay after some epochs; warm-up + cosine to the run's end
STRATEGIES = ("default", "mirrored", "multi_worker")  # tf.distribute strategies
TUNE_ALGORITHMS = ("hyperband", "bayesian", "random")  # Keras Tuner oracles
DYNAMIC_OPTIMIZERS = ("sgd", "adam")  # dynamic evaluation's optimizer
UNKNOWN = ("error", "skip")  # what to do with prime characters outside the vocabulary
CHECKPOINTS = ("best", "last")  # which checkpoint of a run dir
