"""Python out of the training loop: forward and backward are one compiled call each, and
``Model.fit`` on in-memory data trains chunks of steps in one call, with the numbers of
the step-by-step path."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from numba.core.event import install_recorder

import graphc as gc
from graphc.training.fit_loop import TrainingDivergedError

BATCH = 20


@pytest.fixture(scope="module")
def fashion():
    x, y, _, _ = gc.datasets.fashion_mnist(bundled=True)
    return x[:200].copy(), y[:200].copy()


def _fit(symbol, x, y, compiled, optimizer="sgd", params=None, epochs=2, shuffle=True, **extra):
    model = gc.Model(symbol)
    data = gc.io.NDArrayIter(x, y, batch_size=BATCH, shuffle=shuffle, seed=3)
    callback = None if compiled else (lambda param: None)
    with contextlib.nullcontext() if compiled else pytest.warns(gc.StepByStepWarning):
        model.fit(
            data,
            optimizer=optimizer,
            optimizer_params=params or {"learning_rate": 0.1, "momentum": 0.9},
            num_epoch=epochs,
            batch_end_callback=callback,
            verbose=False,
            **extra,
        )
    expected = "compiled" if compiled else "step by step"
    assert model.fit_path.startswith(expected), model.fit_path
    return model


def test_a_schedule_changes_the_rate_inside_a_chunk_without_recompiling(fashion):
    x, y = fashion
    x = x.reshape(len(x), -1)
    schedule = gc.lr_scheduler.FactorScheduler(step=3, factor=0.5)
    params = {"learning_rate": 0.2, "lr_scheduler": schedule}
    with install_recorder("numba:compile") as compiles:
        fast = _fit(gc.models.softmax_regression(), x, y, True, "sgd", params, epochs=3)
    loops = [
        event
        for event in compiles.buffer
        if event[1].is_start and event[1].data["dispatcher"].py_func.__name__ == "train"
    ]
    slow = _fit(
        gc.models.softmax_regression(),
        x,
        y,
        False,
        "sgd",
        {"learning_rate": 0.2, "lr_scheduler": gc.lr_scheduler.FactorScheduler(3, 0.5)},
        epochs=3,
    )
    # Cold: one compile here (none where a compile worker did it); warm: none (loaded from
    # the cache). Never one per rate.
    assert len(loops) <= 1, "one compile of the loop for every rate"
    assert fast.optimizer.learning_rate < 0.2 / 4, "the rate fell inside the run"
    for name, value in slow.get_params()[0].items():
        np.testing.assert_allclose(fast.get_params()[0][name], value, rtol=1e-5, atol=1e-7)


def test_nan_in_a_batch_stops_the_compiled_loop_naming_epoch_and_batch(fashion):
    x, y = fashion
    x = x.reshape(len(x), -1).copy()
    x[1 * BATCH + 4, 10] = np.nan  # batch 1 of every epoch (no shuffling)
    model = gc.Model(gc.models.mlp())
    data = gc.io.NDArrayIter(x, y, batch_size=BATCH)
    with pytest.raises(TrainingDivergedError, match="epoch 0, batch 1") as caught:
        model.fit(data, optimizer_params={"learning_rate": 0.1}, num_epoch=3, verbose=False)
    assert model.fit_path == "compiled"
    assert (caught.value.epoch, caught.value.nbatch) == (0, 1)
    assert model.optimizer.num_update == 1, "the update of the bad batch is not applied"


def test_forward_and_backward_are_one_compiled_call_each(monkeypatch, capfd):
    from graphc.runtime import launch as launch_module

    monkeypatch.setenv("GRAPHC_DUMP", "sequence")
    exe = gc.models.mlp().simple_bind(gc.cpu(), data=(4, 784))
    dumped = capfd.readouterr().err
    assert "def run(entries, arguments, counter, training):" in dumped
    assert "# fused(fc1, relu1): fc1 (FullyConnected) at" in dumped
    calls = []
    monkeypatch.setattr(launch_module, "call_launch", lambda *args: calls.append(args))
    exe.forward(is_train=True)
    exe.backward()
    assert calls == [], "no kernel is called from Python one by one"


def test_the_loop_checks_the_gradient_block_once(fashion):
    """The gradients the loop updates are one block of the arena (zeros between them), so
    the loop checks their finiteness with one pass over it, not one inlined check each."""
    model = _fit(gc.models.mlp(), *fashion, compiled=True, epochs=1)
    trainer = model._trainer  # the CompiledTraining of the last fit
    assert trainer.plan.finite_block
    assert trainer.source.count("all_finite(") == 2, trainer.source  # the head, the block
    assert "if not all_finite(block):" in trainer.source
    gradients = [update[1] for update in trainer.updates]
    assert trainer.block.size >= sum(gradient.size for gradient in gradients)
    for gradient in gradients:
        assert np.shares_memory(gradient, trainer.block)


def test_gradients_are_written_straight_into_grad_dict():
    exe = gc.models.mlp().simple_bind(gc.cpu(), data=(4, 784))
    for name in ("fc1_weight", "fc2_weight"):
        assert exe.gradient_buffer(name) is exe.grad_dict[name], f"{name} is not copied"
    exe.arg_dict["fc1_weight"][:] = 0.01
    exe.arg_dict["data"][:] = 1.0
    exe.forward(is_train=True)
    exe.backward()
    assert np.abs(exe.grad_dict["fc2_weight"]).sum() > 0


def test_resume_through_the_compiled_loop_equals_uninterrupted_training(fashion, tmp_path):
    """Checkpoint after epoch 1 of a shuffled run, resume, train epoch 2: the parameters
    equal those of the run that never stopped (both through the compiled loop)."""
    x, y = fashion
    x = x.reshape(len(x), -1)
    prefix = str(tmp_path / "run")
    settings = {"optimizer_params": {"learning_rate": 0.1, "momentum": 0.9}, "verbose": False}
    straight = gc.Model(gc.models.mlp())
    straight.fit(
        gc.io.NDArrayIter(x, y, batch_size=BATCH, shuffle=True, seed=5),
        num_epoch=3,
        epoch_end_callback=straight.checkpoint_callback(prefix),
        **settings,
    )
    resumed = gc.Model.load(prefix, 2)
    resumed.fit(
        gc.io.NDArrayIter(x, y, batch_size=BATCH, shuffle=True, seed=5),
        begin_epoch=2,
        num_epoch=3,
        **settings,
    )
    assert straight.fit_path == resumed.fit_path == "compiled"
    for name, value in straight.get_params()[0].items():
        np.testing.assert_array_equal(resumed.get_params()[0][name], value)


def test_profile_and_stats_name_the_work(fashion):
    x, y = fashion
    model = gc.Model(gc.models.mlp())
    model.fit(
        gc.io.NDArrayIter(x.reshape(len(x), -1), y, batch_size=BATCH),
        num_epoch=1,
        verbose=False,
    )
    stats = model.stats()
    assert stats["update_kernels"] == 4
    executor_stats = model.bindings.train_executor.stats()
    assert stats["kernels_per_step"] == executor_stats["kernels_per_step"] + 4
    rows = model.bindings.train_executor.profile(repeats=2)
    names = [name for name, _ in rows]
    assert any("fc1 (FullyConnected) at" in name and "relu1 (relu)" in name for name in names)
    assert len(rows) == executor_stats["kernels_per_step"], "one row per kernel"
    assert all(milliseconds > 0 for _, milliseconds in rows)
    assert rows == sorted(rows, key=lambda row: -row[1])


def _softmax_both_ways(x, y, params, epochs, **iterator) -> tuple[gc.Model, gc.Model]:
    """Softmax regression trained compiled and step by step (a batch_end_callback asks for
    it) on the same data; both must reach the same numbers."""
    results = []
    for compiled in (True, False):
        model = gc.Model(gc.models.softmax_regression())
        data = gc.io.NDArrayIter(x, y, batch_size=BATCH, **iterator)
        with contextlib.nullcontext() if compiled else pytest.warns(gc.StepByStepWarning):
            model.fit(
                data,
                optimizer_params=params,
                num_epoch=epochs,
                batch_end_callback=None if compiled else (lambda param: None),
                verbose=False,
            )
        results.append(model)
    fast, slow = results
    assert fast.fit_path == "compiled" and slow.fit_path.startswith("step by step")
    assert fast.optimizer.num_update == slow.optimizer.num_update
    np.testing.assert_allclose(fast.history["train_loss"], slow.history["train_loss"], rtol=1e-5)
    assert fast.history["train_accuracy"] == slow.history["train_accuracy"]
    for name, value in slow.get_params()[0].items():
        np.testing.assert_allclose(fast.get_params()[0][name], value, rtol=1e-5, atol=1e-7)
    return fast, slow


@pytest.mark.parametrize("handle", ["pad", "discard", "roll_over"])
def test_partial_last_batches_train_as_iterating_does(fashion, handle):
    """190 samples in batches of 20: the compiled loop pads, discards or rolls the last
    partial batch over exactly as iterating the NDArrayIter does."""
    x, y = fashion
    iterator = {"shuffle": True, "seed": 2, "last_batch_handle": handle}
    _softmax_both_ways(x.reshape(len(x), -1)[:190], y[:190], {"learning_rate": 0.1}, 3, **iterator)


@pytest.mark.parametrize("handle", ["pad", "discard"])
def test_an_unshuffled_epoch_repeated_over_many_epochs_trains_as_iterating_does(
    fashion, handle, monkeypatch
):
    """Unshuffled data: one epoch's order is handed to the loop once, with each step's
    start, for every epoch a call spans; the padded last batch (rows that wrap) is gathered,
    the others read in place. The chunk is fixed (not timed), so that a call spans 6 of the
    7 epochs whatever the machine's load."""
    from graphc.training import compiled_fit

    calls = []
    steps = compiled_fit.CompiledEpochs._steps

    def recording(self, plans, repeated):
        result = steps(self, plans, repeated)
        calls.append((len(plans), repeated, len(result[0]), result[4].tolist()))
        return result

    monkeypatch.setattr(compiled_fit.CompiledEpochs, "_steps", recording)
    monkeypatch.setattr(compiled_fit.CompiledEpochs, "chunk_steps", lambda self: 24)
    x, y = fashion
    params = {"learning_rate": 0.1, "momentum": 0.9}
    fast, _ = _softmax_both_ways(
        x.reshape(len(x), -1)[:70], y[:70], params, 7, last_batch_handle=handle
    )
    per_epoch = 4 if handle == "pad" else 3
    assert fast.optimizer.num_update == 7 * per_epoch
    # 24 steps a call: 6 epochs of 4 steps, then the seventh (or all 7 epochs of 3), each
    # call cut from one copy of the epoch's order (80 rows with the padding, or 60).
    spanned = [call for call in calls if call[0] > 1]
    assert spanned and all(repeated for _, repeated, _, _ in spanned), calls
    assert {rows for _, _, rows, _ in spanned} == {per_epoch * BATCH}
    in_place = spanned[0][3]
    one_epoch = [True, True, True, False] if handle == "pad" else [True, True, True]
    assert in_place == one_epoch * spanned[0][0]


def test_the_loop_refuses_starts_outside_the_order(fashion):
    from graphc.training.compiled_loop import CompiledTraining

    x, y = fashion
    model = gc.Model(gc.models.softmax_regression())
    model.fit(gc.io.NDArrayIter(x[:40].reshape(40, -1), y[:40], batch_size=BATCH), verbose=False)
    trainer = model._trainer
    assert isinstance(trainer, CompiledTraining)
    sources = [x[:40].reshape(40, -1), y[:40].astype(np.float32)]
    order = np.arange(40, dtype=np.int64)
    one = np.array([BATCH])
    with pytest.raises(ValueError, match=r"1 steps of 20 rows need a start each within the 40"):
        trainer.run(sources, order, one, starts=np.array([21]))
    with pytest.raises(ValueError, match=r"got 2 starts"):
        trainer.run(sources, order, one, starts=np.array([0, 20]))


def _in_arena(executor, array) -> bool:
    return np.shares_memory(array, executor.arena)


def test_one_arena_holds_intermediates_gradients_and_optimizer_state(fashion):
    x, y = fashion
    model = gc.Model(gc.models.mlp())
    model.fit(
        gc.io.NDArrayIter(x.reshape(len(x), -1), y, batch_size=BATCH),
        optimizer="adam",
        num_epoch=1,
        verbose=False,
    )
    exe = model.bindings.train_executor
    for name in model.param_names:
        assert _in_arena(exe, exe.grad_dict[name]), name
        assert all(_in_arena(exe, state) for state in model._opt_states[name]), name
        assert not _in_arena(exe, exe.arg_dict[name]), "parameters keep their own arrays"
    assert all(_in_arena(exe, output) for output in exe.outputs)
    assert np.abs(model._opt_states["fc1_weight"][1]).sum() > 0, "Adam's state was trained"
    # A second fit with the same optimizer kind gets the same buffers back.
    before = model._opt_states["fc1_weight"][0]
    model.fit(
        gc.io.NDArrayIter(x.reshape(len(x), -1), y, batch_size=BATCH),
        optimizer="adam",
        num_epoch=1,
        verbose=False,
    )
    assert model._opt_states["fc1_weight"][0] is before


def test_reserve_plans_the_arena_again_keeping_values():
    exe = gc.models.mlp(hidden=(8,)).simple_bind(gc.cpu(), data=(4, 784))
    assert all(_in_arena(exe, grad) for grad in exe.grad_dict.values())
    exe.arg_dict["fc1_weight"][:] = 0.01
    exe.arg_dict["data"][:] = 1.0
    exe.forward(is_train=True)
    exe.backward()
    outputs = [array.copy() for array in exe.outputs]
    grads = {name: array.copy() for name, array in exe.grad_dict.items()}
    size = exe.arena.nbytes
    (state,) = exe.reserve("optimizer", {"w": ((8, 784), np.float32)}).values()
    assert exe.arena.nbytes >= size + state.nbytes and _in_arena(exe, state)
    assert not state.any(), "reserved buffers start at zero"
    state[:] = 2.0
    for kept, value in zip(exe.outputs, outputs, strict=True):
        np.testing.assert_array_equal(kept, value)
    for name, value in grads.items():
        assert _in_arena(exe, exe.grad_dict[name])
        np.testing.assert_array_equal(exe.grad_dict[name], value)
    assert exe.reserve("optimizer", {"w": ((8, 784), np.float32)})["w"] is state
    exe.forward(is_train=True)  # the kernels run on the new arena
    exe.backward()
    for name, value in grads.items():
        np.testing.assert_allclose(exe.grad_dict[name], value, rtol=1e-6)
    assert (state == 2.0).all()


def test_bind_writes_the_callers_gradient_arrays_unless_told_to_own_them():
    symbol = gc.models.softmax_regression()
    args = {
        "data": np.ones((2, 784), np.float32),
        "fc_weight": np.full((10, 784), 0.01, np.float32),
        "fc_bias": np.zeros(10, np.float32),
        "softmax_label": np.zeros(2, np.float32),
    }
    grads = {"fc_weight": np.zeros((10, 784), np.float32)}
    exe = symbol.bind(gc.cpu(), args, args_grad=grads)
    exe.forward(is_train=True)
    exe.backward()
    assert exe.grad_dict["fc_weight"] is grads["fc_weight"] and grads["fc_weight"].any()
    owned = symbol.bind(gc.cpu(), args, args_grad=grads, own_grads=True)
    assert owned.grad_dict["fc_weight"] is not grads["fc_weight"]
    assert _in_arena(owned, owned.grad_dict["fc_weight"])


def test_the_loop_calls_its_kernels_on_frames(fashion):
    """Every kernel but those reading a batch in place gets its arguments as a frame
    (``codegen_cpu.frames``), not as a tuple the loop's wrapper unboxes: a kind of argument
    frames could not carry would fall back to tuples silently, and this says so."""
    model = _fit(gc.models.mlp(), *fashion, compiled=True, epochs=1)
    trainer = model._trainer
    spelled = {(phase, kernel) for phase, kernel, *_ in trainer.plan.views or ()}
    loop = trainer.fn
    for phase, slots, arguments in zip(
        ("forward", "backward"),
        loop._slots,
        (trainer.forward_arguments, trainer.backward_arguments),
        strict=True,
    ):
        expected = {index for index in range(len(arguments)) if (phase, index) not in spelled}
        assert set(slots) == expected, (phase, slots, spelled)
    calls = trainer.source.count("call_frame(") + trainer.source.count("call_frame_counted(")
    assert calls == sum(len(slots) for slots in loop._slots) > 0
