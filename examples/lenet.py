"""LeNet on Fashion-MNIST, the MXNet example: what `make run` runs.

    python examples/lenet.py                        # the bundled subset, 2 epochs
    python examples/lenet.py --full                 # all 60,000 / 10,000 images

Two 5x5 convolutions (20 and 50 filters) each with tanh and 2x2 max pooling,
FullyConnected 500 with tanh, FullyConnected 10, SoftmaxOutput; SGD with learning rate
0.05, momentum 0.9, weight decay 1e-5, batch 100. The graph is differentiated, fused and
compiled to Numba kernels at bind; training shows a progress bar and one line per epoch,
then the test accuracy is printed and a checkpoint saved (``--checkpoint``, default
``lenet`` in the current directory).
"""

from __future__ import annotations

from fashion_common import parse, train

import graphc as gc

# A model file too: graphc compile/train examples/lenet.py reads these.
net = gc.models.lenet()
input_shapes = {"data": (100, 1, 28, 28)}

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0], epochs=2, batch_size=100, lr=0.05, momentum=0.9, wd=1e-5)
    if args.checkpoint is None:
        args.checkpoint = "lenet"
    train(net, args, flatten=False)
