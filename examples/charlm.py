"""Character LSTM language model on *The Song of Hiawatha*: train with Model.fit, then sample.

    python examples/charlm.py                      # 1 epoch, then 300 sampled characters
    python examples/charlm.py --epochs 10 --temperature 0.7

``gc.models.charlm``: Embedding, one LSTM layer and a softmax over the characters at every
time step, trained by truncated back-propagation through time on ``BPTTIter`` windows of
``--seq-len`` characters in ``--batch-size`` parallel rows (time-major, 'TN'). The LSTM
state is carried from each window to the next (``stateful=True`` and ``state_names``), so
every row reads its stream as one long sequence. The metric is the perplexity per
character: ``exp`` of the mean cross-entropy, the same number as ``exp(loss)``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

import graphc as gc

GENERATED_BEGIN = "----- generated text -----"
GENERATED_END = "----- end of generated text -----"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=100, help="BPTT length (characters)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.01, help="Adam learning rate")
    parser.add_argument("--embed", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--ctx", choices=("cpu",), default="cpu", help="device (cpu only)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="a directory holding hiawatha.txt, or a UTF-8 text file (default: the bundled"
        " Hiawatha)",
    )
    parser.add_argument("--generate", type=int, default=300, help="characters to sample")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--prime", default="", help="text to start from (default: its 1st char)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default=None, help="save PREFIX-symbol.json, ...npz")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in ("seq_len", "batch_size", "epochs", "embed", "hidden"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.generate < 0 or not args.temperature > 0:
        parser.error("--generate must be >= 0 and --temperature > 0")
    return args


def get_symbol(vocab_size: int = 63, embed: int = 256, hidden: int = 256) -> gc.Symbol:
    """The model for ``graphc compile/train examples/charlm.py`` (63: Hiawatha's
    characters): the stateful charlm this script trains."""
    return gc.models.charlm(vocab_size, embed=embed, hidden=hidden, stateful=True)


input_shapes = {"data": (100, 128)}  # BPTT 100, 128 streams


def train(args, corpus: gc.datasets.TextData, ctx) -> gc.Model:
    """Fit ``charlm`` for ``args.epochs`` epochs; fit prints one summary line per epoch."""
    batches = gc.io.BPTTIter(corpus.data, args.batch_size, args.seq_len, layout="TN")
    net = get_symbol(corpus.vocab_size, args.embed, args.hidden)
    model = gc.Model(
        net,
        ctx,
        data_names=("data",),
        label_names=("softmax_label",),
        state_names=gc.models.CHARLM_STATE_NAMES,
    )
    print(
        f"{len(corpus.data):,} characters, vocabulary {corpus.vocab_size}; {len(batches)} "
        f"batches of {args.seq_len} x {args.batch_size} per epoch"
    )
    # charlm's SoftmaxOutput divides its gradient by the batch itself (normalization
    # 'batch'), so fit's default rescale_grad is 1 (graphc.training.heads). Its output is
    # (seq_len * batch, vocab) in time-major row order, the order of the flattened (T, N)
    # label, which is what Perplexity needs.
    model.fit(
        batches,
        eval_metric="perplexity",
        optimizer="adam",
        optimizer_params={"learning_rate": args.lr},
        num_epoch=args.epochs,
        seed=args.seed,
        quiet=True if args.quiet else None,
    )
    return model


def sample_next(probs: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """A character index drawn from ``probs ** (1 / temperature)``, renormalized."""
    logits = np.log(np.maximum(probs.astype(np.float64), 1e-30)) / temperature
    weights = np.exp(logits - logits.max())
    return int(rng.choice(len(weights), p=weights / weights.sum()))


def generate(
    model: gc.Model,
    corpus: gc.datasets.TextData,
    count: int,
    window: int,
    temperature: float = 1.0,
    prime: str = "",
    seed: int = 0,
) -> str:
    """``count`` characters sampled one at a time after ``prime`` (default: the corpus's
    first character).

    A predictor is bound for one character (data (1, 1)) and carries the LSTM state from
    each character to the next, as training carried it from window to window: the prime
    is read one character at a time, then every sampled character is fed back in. ``window``
    is not needed with a carried state and is kept for the command line's sake.
    """
    unknown = sorted(set(prime) - set(corpus.char_to_index))
    if unknown:
        raise ValueError(f"generate: the prime has characters not in the vocabulary: {unknown}")
    tokens = [corpus.char_to_index[character] for character in prime] or [int(corpus.data[0])]
    predictor = model.symbol.simple_bind(model.ctx, grad_req="null", data=(1, 1))
    predictor.copy_params_from(*model.get_params())
    state, cell = predictor.arg_dict["lstm_state"], predictor.arg_dict["lstm_state_cell"]
    rng = np.random.default_rng(seed)
    data = np.zeros((1, 1), dtype=np.float32)
    probs = None
    for token in tokens:
        data[0, 0] = token
        probs, next_state, next_cell = predictor.forward(is_train=False, data=data)
        state[:], cell[:] = next_state, next_cell
    sampled = []
    for _ in range(count):
        token = sample_next(probs[0], temperature, rng)
        sampled.append(token)
        data[0, 0] = token
        probs, next_state, next_cell = predictor.forward(is_train=False, data=data)
        state[:], cell[:] = next_state, next_cell
    return corpus.decode(sampled)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ctx = gc.cpu()
    path = args.data_dir
    if path is not None and path.is_dir():
        path = path / "hiawatha.txt"
    corpus = gc.datasets.text(path)
    start = time.perf_counter()
    model = train(args, corpus, ctx)
    seconds = time.perf_counter() - start
    history = model.history
    per_epoch = ", ".join(f"{value:.3f}" for value in history["train_perplexity"])
    final = history["train_perplexity"][-1]
    print(
        f"training perplexity after {args.epochs} epoch(s): {final:.3f} (per epoch: "
        f"{per_epoch}; exp(loss) {math.exp(history['train_loss'][-1]):.3f}); "
        f"{seconds:.1f} s with compilation, {sum(history['time']):.1f} s in the epochs"
    )
    if args.checkpoint:
        model.save_checkpoint(args.checkpoint, args.epochs)
        print(f"saved {args.checkpoint}-symbol.json and {args.checkpoint}-{args.epochs:04d}.npz")
    if args.generate:
        start = time.perf_counter()
        text = generate(
            model, corpus, args.generate, args.seq_len, args.temperature, args.prime, args.seed
        )
        seconds = time.perf_counter() - start
        print(f"{args.generate} characters at temperature {args.temperature} ({seconds:.1f} s):")
        print(GENERATED_BEGIN)
        print(args.prime + text)
        print(GENERATED_END)


if __name__ == "__main__":
    main()
