"""graphc's ops against MXNet 1.9.1 itself: every op family, forward and every gradient.

MXNet needs numpy < 1.24, so it runs in its own environment and writes what it computed;
graphc then reads each case's MXNet symbol JSON through its importer (``gc.mxnet``),
computes the same outputs and gradients with its NumPy reference, and prints the table:

    python3 -m venv /tmp/mxenv && /tmp/mxenv/bin/pip install mxnet==1.9.1 'numpy<1.24'
    /tmp/mxenv/bin/python tools/mxnet_parity.py mxnet /tmp/mxnet-parity.npz
    .venv/bin/python tools/mxnet_parity.py graphc /tmp/mxnet-parity.npz

Inputs are small float64 arrays from a fixed seed. A non-loss output's gradient is taken
for a fixed random head gradient; a loss head's is its own (MXNet's ``backward()``).
Labels and indices get no gradient. A case passes when every output and gradient agrees
to 1e-7 relative to the array's largest value (at least 1): MXNet holds an op's own
parameters (LeakyReLU's slope, a head's grad_scale and the scale it divides by) in
float32, which shows in the eighth digit of a float64 result; a difference in meaning is
far larger.
"""

from __future__ import annotations

import json
import sys

import numpy as np

SEED = 3


def cases(S):
    """(family, name, symbol, input shapes, no-gradient inputs, input makers) for MXNet's
    symbol module ``S``; labels and indices are made by ``labels`` below."""
    x, y, w = S.Variable("x"), S.Variable("y"), S.Variable("w")
    label, idx = S.Variable("label"), S.Variable("idx")
    rows = []

    def add(family, name, symbol, shapes, nograd=(), ints=None):
        rows.append((family, name, symbol, shapes, tuple(nograd), ints or {}))

    add("FullyConnected", "flatten", S.FullyConnected(x, num_hidden=3, name="fc"), {"x": (2, 3, 4)})
    add(
        "FullyConnected",
        "no_flatten",
        S.FullyConnected(x, num_hidden=3, flatten=False, name="fc"),
        {"x": (2, 3, 4)},
    )
    add(
        "FullyConnected",
        "no_bias",
        S.FullyConnected(x, num_hidden=3, no_bias=True, name="fc"),
        {"x": (2, 5)},
    )
    add(
        "Convolution",
        "pad_stride",
        S.Convolution(x, kernel=(3, 2), stride=(2, 1), pad=(1, 1), num_filter=3, name="conv"),
        {"x": (2, 2, 6, 5)},
    )
    add(
        "Convolution",
        "no_bias",
        S.Convolution(x, kernel=(2, 2), num_filter=2, no_bias=True, name="conv"),
        {"x": (1, 3, 4, 4)},
    )
    for conv in ("valid", "full"):
        add(
            "Pooling",
            f"max_{conv}",
            S.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type="max", pooling_convention=conv),
            {"x": (2, 2, 5, 5)},
        )
        add(
            "Pooling",
            f"avg_{conv}",
            S.Pooling(x, kernel=(3, 3), stride=(2, 2), pool_type="avg", pooling_convention=conv),
            {"x": (2, 2, 6, 6)},
        )
    add(
        "Pooling",
        "avg_pad_count",
        S.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="avg"),
        {"x": (1, 2, 5, 5)},
    )
    add(
        "Pooling",
        "avg_pad_nocount",
        S.Pooling(
            x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="avg", count_include_pad=False
        ),
        {"x": (1, 2, 5, 5)},
    )
    add(
        "Pooling",
        "max_pad",
        S.Pooling(x, kernel=(3, 3), stride=(1, 1), pad=(1, 1), pool_type="max"),
        {"x": (1, 2, 4, 4)},
    )
    add(
        "Pooling",
        "global_max",
        S.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="max"),
        {"x": (2, 3, 4, 5)},
    )
    add(
        "Pooling",
        "global_avg",
        S.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg"),
        {"x": (2, 3, 4, 5)},
    )
    for act in ("relu", "sigmoid", "tanh", "softrelu"):
        add("Activation", act, S.Activation(x, act_type=act), {"x": (3, 4)})
    add("LeakyReLU", "leaky", S.LeakyReLU(x, act_type="leaky", slope=0.2), {"x": (3, 4)})
    add("LeakyReLU", "elu", S.LeakyReLU(x, act_type="elu", slope=0.7), {"x": (3, 4)})
    for op in (
        "exp",
        "log",
        "sqrt",
        "square",
        "abs",
        "sign",
        "negative",
        "relu",
        "sigmoid",
        "tanh",
    ):
        add("unary math", op, getattr(S, op)(x), {"x": (3, 4)})
    for op in ("add", "sub", "mul", "div", "power", "maximum", "minimum"):
        add("broadcast_*", op, getattr(S, f"broadcast_{op}")(x, y), {"x": (3, 1, 4), "y": (2, 1)})
    for op in ("add", "sub", "mul", "div"):
        add("elemwise_*", op, getattr(S, f"elemwise_{op}")(x, y), {"x": (3, 4), "y": (3, 4)})
    for op in ("equal", "not_equal", "greater", "greater_equal", "lesser", "lesser_equal"):
        add("comparisons", op, getattr(S, f"broadcast_{op}")(x, y) + x, {"x": (3, 4), "y": (3, 1)})
    add("scalar ops", "arithmetic", ((x + 1.5) * 2.0 - 0.5) / 3.0, {"x": (3, 4)})
    add("scalar ops", "reversed", 2.0 - x + 3.0 / x + 2.0**x, {"x": (3, 4)})
    add("scalar ops", "power_max_min", S.maximum(S.minimum(x**2.0, 1.5), 0.2), {"x": (3, 4)})
    for op in ("sum", "mean", "max", "min"):
        add("reductions", f"{op}_axis", getattr(S, op)(x, axis=1), {"x": (3, 4, 2)})
        add(
            "reductions",
            f"{op}_keepdims",
            getattr(S, op)(x, axis=(0, 2), keepdims=True),
            {"x": (3, 4, 2)},
        )
        add("reductions", f"{op}_all", getattr(S, op)(x), {"x": (3, 4)})
    add("dot", "plain", S.dot(x, w), {"x": (3, 4), "w": (4, 2)})
    add(
        "dot",
        "transposed",
        S.dot(x, w, transpose_a=True, transpose_b=True),
        {"x": (4, 3), "w": (2, 4)},
    )
    add("batch_dot", "plain", S.batch_dot(x, w), {"x": (2, 3, 4), "w": (2, 4, 5)})
    add(
        "batch_dot",
        "transposed",
        S.batch_dot(x, w, transpose_a=True, transpose_b=True),
        {"x": (2, 4, 3), "w": (2, 5, 4)},
    )
    add("softmax", "last_axis", S.softmax(x), {"x": (3, 4)})
    add("softmax", "axis_0_temperature", S.softmax(x, axis=0, temperature=2.0), {"x": (3, 4)})
    add("softmax", "log_softmax", S.log_softmax(x, axis=1), {"x": (2, 3, 4)})
    for name, shape in (
        ("keep_0_infer", (0, -1)),
        ("copy_rest_-2", (-2,)),
        ("merge_-3", (-3, -2)),
        ("split_-4", (-4, 2, -1, -2)),
        ("plain", (4, 6)),
    ):
        add("Reshape", name, S.Reshape(x, shape=shape), {"x": (4, 3, 2)})
    add("Reshape", "reverse", S.Reshape(x, shape=(-1, 0), reverse=True), {"x": (4, 3, 2)})
    add("Flatten", "flatten", S.Flatten(x), {"x": (2, 3, 2)})
    split = S.SliceChannel(x, num_outputs=3, axis=1)
    add("SliceChannel", "axis1", split[0] * split[2] + split[1], {"x": (2, 6)})
    squeezed = S.SliceChannel(x, num_outputs=2, axis=0, squeeze_axis=True)
    add("SliceChannel", "squeeze", squeezed[0] - 2.0 * squeezed[1], {"x": (2, 3, 4)})
    add("Concat", "dim1", S.Concat(x, y, dim=1), {"x": (2, 3), "y": (2, 2)})
    add("expand_dims", "axis1", S.expand_dims(x, axis=1), {"x": (3, 4)})
    add("transpose", "axes", S.transpose(x, axes=(2, 0, 1)), {"x": (2, 3, 4)})
    add("transpose", "default", S.transpose(x), {"x": (2, 3, 4)})
    add("slice_axis", "end_none", S.slice_axis(x, axis=1, begin=1, end=None), {"x": (3, 4)})
    add("slice_axis", "negative", S.slice_axis(x, axis=-1, begin=-3, end=-1), {"x": (3, 4)})
    add(
        "Embedding",
        "lookup",
        S.Embedding(idx, input_dim=5, output_dim=3, name="embed"),
        {"idx": (2, 3)},
        nograd=("idx",),
        ints={"idx": 5},
    )
    add(
        "one_hot",
        "depth",
        S.one_hot(idx, depth=4, on_value=2.0, off_value=-1.0, dtype="float64") * 1.0,
        {"idx": (2, 3)},
        nograd=("idx",),
        ints={"idx": 4},
    )
    add(
        "pick",
        "axis1",
        S.pick(x, idx, axis=1),
        {"x": (3, 4), "idx": (3,)},
        nograd=("idx",),
        ints={"idx": 4},
    )
    add(
        "pick",
        "keepdims",
        S.pick(x, idx, axis=0, keepdims=True),
        {"x": (3, 4), "idx": (4,)},
        nograd=("idx",),
        ints={"idx": 3},
    )
    add("add_n", "three", S.add_n(x, y, x * y), {"x": (3, 4), "y": (3, 4)})
    add("BlockGrad", "stops", S.BlockGrad(x) * y + x, {"x": (3, 4), "y": (3, 4)})
    add("Dropout", "inference", S.Dropout(x, p=0.5) * 2.0, {"x": (3, 4)})
    add(
        "SoftmaxOutput",
        "plain",
        S.SoftmaxOutput(x, label, name="sm"),
        {"x": (4, 3), "label": (4,)},
        nograd=("label",),
        ints={"label": 3},
    )
    add(
        "SoftmaxOutput",
        "grad_scale",
        S.SoftmaxOutput(x, label, grad_scale=0.5, name="sm"),
        {"x": (4, 3), "label": (4,)},
        nograd=("label",),
        ints={"label": 3},
    )
    for norm in ("null", "batch", "valid"):
        add(
            "SoftmaxOutput",
            f"multi_output_{norm}",
            S.SoftmaxOutput(x, label, multi_output=True, normalization=norm, name="sm"),
            {"x": (2, 3, 4), "label": (2, 4)},
            nograd=("label",),
            ints={"label": 3},
        )
        add(
            "SoftmaxOutput",
            f"ignore_{norm}",
            S.SoftmaxOutput(
                x, label, use_ignore=True, ignore_label=1, normalization=norm, name="sm"
            ),
            {"x": (5, 3), "label": (5,)},
            nograd=("label",),
            ints={"label": 3},
        )
        add(
            "SoftmaxOutput",
            f"preserve_shape_{norm}",
            S.SoftmaxOutput(x, label, preserve_shape=True, normalization=norm, name="sm"),
            {"x": (2, 3, 4), "label": (2, 3)},
            nograd=("label",),
            ints={"label": 4},
        )
        add(
            "SoftmaxOutput",
            f"multi_output_ignore_{norm}",
            S.SoftmaxOutput(
                x,
                label,
                multi_output=True,
                use_ignore=True,
                ignore_label=0,
                normalization=norm,
                name="sm",
            ),
            {"x": (2, 3, 4), "label": (2, 4)},
            nograd=("label",),
            ints={"label": 3},
        )
    add(
        "LinearRegressionOutput",
        "n_by_1_label_n",
        S.LinearRegressionOutput(x, label, name="lro"),
        {"x": (4, 1), "label": (4,)},
        nograd=("label",),
    )
    add(
        "LinearRegressionOutput",
        "matrix",
        S.LinearRegressionOutput(x, label, grad_scale=2.0, name="lro"),
        {"x": (4, 3), "label": (4, 3)},
        nograd=("label",),
    )
    add(
        "LogisticRegressionOutput",
        "n_by_1_label_n",
        S.LogisticRegressionOutput(x, label, name="lo"),
        {"x": (4, 1), "label": (4,)},
        nograd=("label",),
        ints={"label": 2},
    )
    add("MakeLoss", "sum", S.MakeLoss(S.sum(x * x), grad_scale=0.5), {"x": (3, 4)})
    add("MakeLoss", "batch", S.MakeLoss(x * x, normalization="batch"), {"x": (3, 4)})
    rnn = S.RNN(
        x,
        S.Variable("rnn_parameters"),
        S.Variable("h0"),
        S.Variable("c0"),
        state_size=3,
        num_layers=1,
        mode="lstm",
        state_outputs=True,
        name="rnn",
    )
    add(
        "RNN (fused LSTM)",
        "with_states",
        S.Group([rnn[0], rnn[1], rnn[2]]),
        {
            "x": (4, 2, 3),
            "rnn_parameters": (4 * 3 * (3 + 3 + 2),),
            "h0": (1, 2, 3),
            "c0": (1, 2, 3),
        },
    )
    return rows


def run_mxnet(out: str) -> None:
    import mxnet as mx

    rng = np.random.default_rng(SEED)
    store, meta = {}, []
    for family, name, symbol, shapes, nograd, ints in cases(mx.sym):
        key = f"{family}/{name}"
        arg_shapes, out_shapes, _ = symbol.infer_shape(**shapes)
        args = {}
        for arg, shape in zip(symbol.list_arguments(), arg_shapes):
            if arg in ints:
                args[arg] = rng.integers(0, ints[arg], shape).astype(np.float64)
            elif arg == "label":
                args[arg] = rng.standard_normal(shape)
            else:
                args[arg] = rng.uniform(0.3, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
                if name in ("log", "sqrt", "power", "reversed", "power_max_min"):
                    args[arg] = np.abs(args[arg])
        if name == "ignore_null" or name.startswith("ignore_"):
            args["label"][0] = 1  # at least one ignored row
        requests = {arg: "null" if arg in nograd else "write" for arg in args}
        executor = symbol.simple_bind(
            mx.cpu(),
            grad_req=requests,
            type_dict={a: np.float64 for a in args},
            **{a: v.shape for a, v in args.items()},
        )
        for arg, value in args.items():
            executor.arg_dict[arg][:] = value
        train = family != "Dropout"  # Dropout's mask is each framework's own draw
        outputs = executor.forward(is_train=train)
        heads = [rng.standard_normal(o.shape) for o in outputs]
        if train:
            executor.backward([mx.nd.array(h, dtype=np.float64) for h in heads])
        record = {"key": key, "json": symbol.tojson(), "nograd": list(nograd), "args": list(args)}
        record["train"] = train
        # What shape inference makes of the labels and parameters from the data alone.
        data_only = {a: shapes[a] for a in shapes if a not in nograd or a in ints and a != "label"}
        inferred, _, _ = symbol.infer_shape_partial(**data_only)
        record["data_only"] = {a: list(v) for a, v in data_only.items()}
        record["inferred"] = {
            a: (list(v) if v is not None and 0 not in v else None)
            for a, v in zip(symbol.list_arguments(), inferred)
        }
        for arg, value in args.items():
            store[f"{key}|in|{arg}"] = value
            if arg not in nograd and train:
                store[f"{key}|grad|{arg}"] = executor.grad_dict[arg].asnumpy()
        for index, (output, head) in enumerate(zip(outputs, heads)):
            store[f"{key}|out|{index}"] = output.asnumpy()
            store[f"{key}|head|{index}"] = head
        record["outputs"] = len(outputs)
        meta.append(record)
    store["__meta__"] = np.array(json.dumps({"mxnet": mx.__version__, "cases": meta}))
    np.savez_compressed(out, **store)
    print(f"mxnet {mx.__version__}: {len(meta)} cases written to {out}")


def run_graphc(path: str) -> int:
    import graphc as gc
    from graphc.interop.mxnet import LSTM_PARAMETERS, unpacked_rnn_parameters
    from graphc.interop.mxnet_json import read_symbol_json
    from graphc.ir.registry import get_op

    data = np.load(path)
    meta = json.loads(str(data["__meta__"]))
    families: dict[str, list] = {}
    for record in meta["cases"]:
        key = record["key"]
        family, name = key.split("/")
        tolerance = 1e-7
        try:
            graph = read_symbol_json(record["json"], key)
            symbol, args = graph.symbol, {a: data[f"{key}|in|{a}"] for a in record["args"]}
            for rnn in graph.packed_rnns:
                unpacked = unpacked_rnn_parameters(rnn, args.pop(rnn.packed))
                args.update(unpacked)
                record["args"] = [a for a in record["args"] if a != rnn.packed] + list(unpacked)
                record["packed"] = rnn
            packed = {rnn.packed for rnn in graph.packed_rnns}  # graphc holds four arrays
            given = {a: v for a, v in record["data_only"].items() if a not in packed}
            mine, _, _ = symbol.infer_shape_partial(**given)
            mine = dict(zip(symbol.list_arguments(), mine))
            for arg, shape in record["inferred"].items():
                if shape is not None and arg in mine and tuple(shape) != tuple(mine[arg] or ()):
                    raise AssertionError(f"{arg} inferred {mine[arg]}, MXNet {tuple(shape)}")
            outputs = gc.evaluate(symbol, args, is_train=record["train"])
            errors = [_error(o, data[f"{key}|out|{i}"]) for i, o in enumerate(outputs)]
            heads, feeds = [], dict(args)
            for index, entry in enumerate(symbol.entries):
                node = entry.node
                if not node.is_variable and get_op(node.op).is_loss_head:
                    heads.append(None)
                else:
                    heads.append(gc.Variable(f"_head{index}"))
                    feeds[f"_head{index}"] = data[f"{key}|head|{index}"]
            wrt = (
                [a for a in record["args"] if a not in record["nograd"]] if record["train"] else []
            )
            by_name = {}
            if wrt:
                gradient = gc.Group(gc.grad(symbol, wrt, head_grads=heads))
                needed = set(gradient.list_arguments())  # a gradient may not read every input
                feeds = {k: v for k, v in feeds.items() if k in needed}
                by_name = dict(zip(wrt, gc.evaluate(gradient, feeds, is_train=True)))
            if "packed" in record:  # MXNet's gradient is of the packed vector: pack graphc's
                rnn = record["packed"]
                names = [f"{rnn.prefix}_{n}" for n in LSTM_PARAMETERS]
                by_name[rnn.packed] = np.concatenate([by_name.pop(n).ravel() for n in names])
            for arg, value in by_name.items():
                errors.append(_error(value, data[f"{key}|grad|{arg}"]))
            worst = max(errors)
            verdict = "same" if worst <= tolerance else "DIFFERS"
        except Exception as exc:  # a case graphc cannot import or run is a row too
            worst, verdict = float("nan"), f"ERROR {type(exc).__name__}: {str(exc)[:90]}"
        families.setdefault(family, []).append((name, worst, verdict))
    print(
        f"graphc {gc.__version__} against mxnet {meta['mxnet']}, float64, forward and gradients\n"
    )
    print("| op family | cases | largest relative difference | result |")
    print("| --- | --- | --- | --- |")
    failed = 0
    for family, rows in families.items():
        bad = [f"{n}: {v}" for n, _, v in rows if v != "same"]
        failed += len(bad)
        worst = max((w for _, w, _ in rows if w == w), default=float("nan"))
        names = ", ".join(n for n, _, _ in rows)
        print(f"| {family} | {names} | {worst:.1e} | {'same' if not bad else '; '.join(bad)} |")
    return 1 if failed else 0


def _error(got, want) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return float("inf")  # a shape of its own is a difference
    scale = max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
    return float(np.max(np.abs(got - want))) / scale if want.size else 0.0


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "mxnet":
        run_mxnet(path)
    else:
        sys.exit(run_graphc(path))
