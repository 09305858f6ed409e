"""LeNet: build, infer shapes, differentiate, evaluate on the reference, then compiled.

    python examples/lenet.py --batch-size 16

This is the MXNet example's LeNet. Until Model.fit and the bundled data land, it runs one
forward and backward pass of a random batch on the NumPy reference executor, then binds
the compiled CPU executor, checks it against the reference and times its training step.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import graphc as gc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    net = gc.models.lenet()
    data_shape = (args.batch_size, 1, 28, 28)
    arg_shapes, out_shapes, _ = net.infer_shape(data=data_shape)
    print(net.debug_str(data=data_shape))
    print()

    params = [name for name in net.list_arguments() if name not in ("data", "softmax_label")]
    rng = np.random.default_rng(args.seed)
    values = {}
    for name, shape in zip(net.list_arguments(), arg_shapes):
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        values[name] = (rng.standard_normal(shape) / math.sqrt(fan_in)).astype(np.float32)
    values["data"] = rng.random(data_shape, dtype=np.float32)
    values["softmax_label"] = rng.integers(0, 10, args.batch_size).astype(np.float32)
    for name in params:
        if name.endswith("_bias"):
            values[name][:] = 0

    gradients = gc.grad(net, params)
    train_step = gc.Group([net, *gradients])
    print(f"parameters: {sum(values[n].size for n in params):,} values in {len(params)} arrays")
    print(
        f"forward graph: {len(net.graph.nodes)} nodes; with gradients: {len(train_step.graph.nodes)} nodes"
    )

    start = time.perf_counter()
    probs, *grads = gc.evaluate(train_step, values)
    elapsed = time.perf_counter() - start
    labels = values["softmax_label"].astype(int)
    loss = -np.mean(np.log(probs[np.arange(args.batch_size), labels]))
    print(f"output {out_shapes[0]}, cross-entropy {loss:.4f} (chance: {math.log(10):.4f})")
    for name, grad in zip(params, grads):
        print(f"  d{name:<14} {str(grad.shape):<18} |g| = {np.linalg.norm(grad):.4e}")
    print(f"reference forward + backward of batch {args.batch_size}: {elapsed:.2f} s")

    start = time.perf_counter()
    exe = net.simple_bind(gc.cpu(), data=data_shape)
    exe.copy_params_from(values)
    exe.forward(is_train=True)
    exe.backward()
    print(f"compiled CPU executor: bound and first step in {time.perf_counter() - start:.2f} s")
    worst = max(
        float(np.max(np.abs(exe.grad_dict[name] - grad)) / max(np.max(np.abs(grad)), 1e-12))
        for name, grad in zip(params, grads)
    )
    print(f"  largest gradient difference to the reference: {worst:.2e} (relative)")
    steps = 10
    start = time.perf_counter()
    for _ in range(steps):
        exe.forward(is_train=True)
        exe.backward()
    per_step = (time.perf_counter() - start) / steps
    stats = exe.stats()
    print(
        f"  training step (forward + backward): {per_step * 1e3:.1f} ms;"
        f" {stats['kernels_per_step']} kernels, {stats['planned_peak_bytes'] / 2**20:.1f} MiB planned"
    )


if __name__ == "__main__":
    main()
