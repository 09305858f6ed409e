"""One rank of the data-parallel tests (tests/test_dist.py), launched as
``mpiexec -n 2 python tests/dist_worker.py SCENARIO OUT_DIR``.

Every scenario trains a small float64 MLP on data drawn from one seed; each rank reads its
part (``num_parts``/``part_index``) and draws its initial weights with its own seed (rank 0's
are broadcast). Results go to ``OUT_DIR/<scenario>-rank<r>.npz``.
"""

from __future__ import annotations

import sys
import time

import numpy as np

SAMPLES, FEATURES, CLASSES, BATCH = 240, 12, 3, 20


def data():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(SAMPLES, FEATURES))
    y = (x[:, :CLASSES].argmax(axis=1)).astype(np.float64)
    return x, y


def global_order(workers: int) -> np.ndarray:
    """The sample order under which one process at batch ``workers * BATCH`` sees, as its
    batch j, the ranks' batches j one after the other."""
    per_part = SAMPLES // workers
    steps = per_part // BATCH
    return np.concatenate(
        [
            np.arange(rank * per_part + step * BATCH, rank * per_part + (step + 1) * BATCH)
            for step in range(steps)
            for rank in range(workers)
        ]
    )


ROWS, SEQ_LEN = 2, 5


def stream() -> np.ndarray:
    """Characters whose halves cut into ``ROWS`` rows each as one process cuts the whole
    into ``2 * ROWS`` rows: 2 parts x 2 rows x 26 tokens."""
    return np.random.default_rng(3).integers(0, 7, size=2 * ROWS * 26)


def charlm(gc):
    net = gc.models.charlm(7, embed=4, hidden=6, stateful=True, dtype="float64")
    return gc.Model(net, state_names=gc.models.CHARLM_STATE_NAMES)


def model(gc, hidden=(16,)):
    return gc.Model(gc.models.mlp(hidden=hidden, num_classes=CLASSES, dtype="float64"))


def train(gc, kv, epochs=2, hidden=(16,), callbacks=None, batch=BATCH, shuffle=False, **fit):
    x, y = data()
    it = gc.io.NDArrayIter(
        x,
        y,
        batch_size=batch,
        shuffle=shuffle,
        seed=5,
        num_parts=kv.num_workers,
        part_index=kv.rank,
    )
    net = model(gc, hidden)
    net.fit(
        it,
        optimizer="sgd",
        optimizer_params={"learning_rate": 0.5, "momentum": 0.9},
        num_epoch=epochs,
        seed=kv.rank,  # the ranks draw different weights: the broadcast must make them agree
        kvstore=kv,
        quiet=True,
        batch_end_callback=callbacks,
        **fit,
    )
    return net


def save(out: str, name: str, kv, net, **extra) -> None:
    params, _ = net.get_params()
    np.savez(
        f"{out}/{name}-rank{kv.rank}.npz",
        **{f"param:{key}": value for key, value in params.items()},
        **{f"history:{key}": np.array(value) for key, value in net.history.items()},
        **extra,
    )


def main(scenario: str, out: str) -> None:
    import graphc as gc

    timeout = 4.0 if scenario == "exit_before_fit" else 60.0
    stall = 4.0 if scenario == "stall" else 60.0
    # "buckets": gradients summed in buckets of at least 512 B as the backward completes them
    buckets = 0.5 / 1024 if scenario == "buckets" else None
    kv = gc.kvstore.create("dist_sync", timeout=timeout, stall_timeout=stall, bucket_mb=buckets)
    if scenario in ("compiled", "steps", "buckets"):
        x, y = data()  # validation: each rank its part, the sums over the ranks reported
        held_out = gc.io.NDArrayIter(x, y, 30, num_parts=kv.num_workers, part_index=kv.rank)
        # a batch_end_callback keeps Python in every step
        callbacks = [lambda param: None] if scenario == "steps" else None
        net = train(gc, kv, callbacks=callbacks, eval_data=held_out)
        buckets = net._trainer.buckets if net._trainer is not None else None
        kv.init("w", np.zeros(3))  # MXNet's push and pull, across the ranks
        kv.push("w", [np.full(3, kv.rank + 1.0), np.ones(3)])
        pulled = np.zeros(3)
        kv.pull("w", pulled)
        save(
            out,
            scenario,
            kv,
            net,
            buckets=np.array(len(buckets or ())),
            # the backward kernel after which each bucket's sum starts, and how many there are
            starts=np.array([after for after, _ in buckets or ()], dtype=np.int64),
            kernels=np.array(len(net.bindings.train_executor._backward_run.launches)),
            path=np.array(net.fit_path),
            in_place=np.array(net._trainer is not None and net._trainer.plan.in_place),
            pulled=pulled,
        )
    elif scenario == "bptt":
        net = charlm(gc)
        it = gc.io.BPTTIter(
            stream(), ROWS, SEQ_LEN, layout="TN", num_parts=kv.num_workers, part_index=kv.rank
        )
        net.fit(it, optimizer="adam", num_epoch=2, seed=kv.rank, kvstore=kv, quiet=True)
        save(out, scenario, kv, net)
    elif scenario == "checkpoint":
        import graphc.training.model as model_module

        writes = []
        real = model_module.save_checkpoint_files
        model_module.save_checkpoint_files = lambda *a: (writes.append(1), real(*a))
        net = train(gc, kv, epochs=2, shuffle=True)
        first = train(gc, kv, epochs=1, shuffle=True)  # an interrupted run's epoch 1
        first.save_checkpoint(f"{out}/mlp", 1)
        resumed = gc.Model.load(f"{out}/mlp", 1)
        x, y = data()
        it = gc.io.NDArrayIter(
            x, y, batch_size=BATCH, shuffle=True, seed=5, num_parts=kv.num_workers,
            part_index=kv.rank,
        )  # fmt: skip
        resumed.fit(
            it,
            optimizer="sgd",
            optimizer_params={"learning_rate": 0.5, "momentum": 0.9},
            num_epoch=2,
            begin_epoch=1,
            kvstore=kv,
            quiet=True,
        )
        save(out, "uninterrupted", kv, net, writes=np.array(len(writes)))
        save(out, "resumed", kv, resumed)
    elif scenario == "raise":

        def fail(param):
            if kv.rank == 1 and param.nbatch == 2:
                raise ValueError("a bad batch on rank 1")

        train(gc, kv, callbacks=[fail])
    elif scenario == "exit_in_fit":

        def leave(param):
            if kv.rank == 1 and param.nbatch == 2:
                sys.exit(3)

        train(gc, kv, callbacks=[leave])
    elif scenario == "exit_before_fit":
        if kv.rank == 1:
            sys.exit(3)
        train(gc, kv)
    elif scenario == "mismatch":
        train(gc, kv, batch=BATCH if kv.rank == 0 else BATCH // 2)
    elif scenario == "stall":  # rank 1 hangs while rank 0 waits in the compiled loop

        def hang(epoch, *_):
            if kv.rank == 1:
                time.sleep(120)

        train(gc, kv, epoch_end_callback=hang)  # the compiled loop, not step by step
    elif scenario in ("diverge", "diverge_steps"):
        x, y = data()
        if kv.rank == 1:
            x[SAMPLES // 2 + 3 * BATCH + 1, 0] = np.nan  # rank 1's batch 3 of epoch 0
        it = gc.io.NDArrayIter(x, y, batch_size=BATCH, num_parts=kv.num_workers, part_index=kv.rank)
        net = model(gc)
        callbacks = [lambda param: None] if scenario == "diverge_steps" else None
        try:
            net.fit(it, num_epoch=2, kvstore=kv, quiet=True, batch_end_callback=callbacks)
        except gc.TrainingDivergedError as error:
            np.savez(f"{out}/{scenario}-rank{kv.rank}.npz", at=[error.epoch, error.nbatch])
    else:
        raise SystemExit(f"unknown scenario {scenario}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
