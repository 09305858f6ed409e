"""The seed models in PyTorch, for the benchmarks that measure PyTorch as a peer (imported
only by them; graphc never imports torch)."""

from __future__ import annotations


def lenet():
    """MXNet's LeNet: two 5x5 convolutions (20, 50) with tanh and 2x2 max pooling,
    FullyConnected 500 with tanh, FullyConnected 10."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 20, 5),
        nn.Tanh(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(20, 50, 5),
        nn.Tanh(),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(800, 500),
        nn.Tanh(),
        nn.Linear(500, 10),
    )


def mlp(hidden: int = 64):
    from torch import nn

    return nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def charlm_step(embed, lstm, decoder, optimizer, loss_fn, window, state, vocab: int):
    """One truncated-BPTT step on a (length + 1, batch) window of character indices; returns
    the loss and the state to carry (detached)."""
    optimizer.zero_grad()
    hidden, state = lstm(embed(window[:-1]), state)
    state = tuple(part.detach() for part in state)
    loss = loss_fn(decoder(hidden).reshape(-1, vocab), window[1:].reshape(-1))
    loss.backward()
    optimizer.step()
    return loss, state
