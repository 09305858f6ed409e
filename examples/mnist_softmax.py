"""Softmax regression on Fashion-MNIST (Knet's first MNIST model), trained with gc.Model.

    python examples/mnist_softmax.py                # the bundled subset
    python examples/mnist_softmax.py --full         # all 60,000 / 10,000 images

SGD, learning rate 0.1, batch 100, 10 epochs; the test accuracy is printed at the end.
"""

from __future__ import annotations

from fashion_common import parse, train

import graphc as gc

# A model file too: graphc compile/train examples/mnist_softmax.py reads these.
net = gc.models.softmax_regression()
input_shapes = {"data": (100, 784)}

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0], epochs=10, batch_size=100, lr=0.1, momentum=0, wd=0)
    train(net, args, flatten=True)
