"""The seed models in PyTorch for the micro-benchmarks that measure PyTorch as a peer
(bench_step.py, bench_cuda.py): those of ``graphc bench``'s PyTorch peer, so there is one
copy (imported only by them; graphc never imports torch)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

from graphc.bench.systems import PEERS_DIR


def _build(model: str, settings: dict):
    """The peer's module, imported only when asked for (these scripts run without torch)."""
    if str(PEERS_DIR) not in sys.path:
        sys.path.insert(0, str(PEERS_DIR))  # the peer imports peer_protocol from its folder
    import torch_peer

    return torch_peer.build(SimpleNamespace(model=model, settings=settings))


def lenet():
    """MXNet's LeNet: two 5x5 convolutions (20, 50) with tanh and 2x2 max pooling,
    FullyConnected 500 with tanh, FullyConnected 10."""
    return _build("lenet", {})


def mlp(hidden: int = 64):
    return _build("mlp", {"hidden": hidden})


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
