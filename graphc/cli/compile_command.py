"""``graphc compile MODEL.py``: infer shapes, run the passes, compile every kernel, report.

The forward graph (and with ``--train`` everything ``Model.fit`` runs: the gradient, the
optimizer update and the compiled training loop, by training one batch of zeros) is bound
and run once, so every kernel is compiled into the cache; the summary says how each was
found — compiled, compiled by a worker, loaded from the disk cache, in memory — and how
long it took (``GRAPHC_LOG=compile`` prints the same lines from any program). A second run
finds every kernel in the cache.
"""

from __future__ import annotations

import argparse
import ast
import math
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

import graphc as gc
from graphc.backend.cache_location import cache_dir
from graphc.backend.source_cache import GENERATED_PACKAGE, REBUILT
from graphc.cli.model_files import load_model_file
from graphc.codegen_cpu import compile_log
from graphc.ir.gradcheck import non_differentiable_arguments
from graphc.passes.dump import pass_dumper, to_dot
from graphc.training.heads import label_names_of, loss_heads

DUMPS = ("ir", "grad", "optimized", "kernels", "dot", "json")


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    name, _, dims = text.partition("=")
    if not name or not dims:
        raise argparse.ArgumentTypeError(f"expected NAME=D1,D2,..., got {text!r}")
    try:
        return name, tuple(int(dim) for dim in dims.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"dimensions must be integers: {text!r}") from None


def parse_option(text: str) -> tuple[str, object]:
    """``K=V`` for a model file's ``get_symbol``/``build``: V read as a Python literal (a
    number, a tuple, True) or else kept as a string."""
    key, sep, value = text.partition("=")
    if not key or not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def add_parser(commands, common) -> None:
    parser = commands.add_parser(
        "compile",
        parents=[common],
        help="infer shapes, run the passes, compile every kernel and report",
    )
    parser.add_argument("model", help="a .py model file or a saved .json graph")
    parser.add_argument(
        "--option",
        action="append",
        type=parse_option,
        default=[],
        metavar="KEY=VALUE",
        help="an argument of the file's get_symbol() or build() (repeatable)",
    )
    parser.add_argument(
        "--shape",
        action="append",
        type=parse_shape,
        default=[],
        help="an input shape, NAME=D1,D2,... (repeatable; overrides the file's input_shapes)",
    )
    parser.add_argument("--target", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "-O",
        "--opt-level",
        dest="opt_level",
        type=int,
        default=2,
        choices=[0, 1, 2],
        help="the passes: -O0 none, -O1 simplification, -O2 also fusion and in-place",
    )
    parser.add_argument(
        "--train",
        action="store_true",
        help="also compile what Model.fit runs: the gradient, the update and the compiled"
        " training loop (one batch of zeros is trained)",
    )
    parser.add_argument(
        "--dump",
        action="append",
        default=[],
        choices=DUMPS,
        help="print the graph (ir), the gradient (grad), the training graph after the passes"
        " (optimized) or the JSON; write the generated kernels' sources (kernels) or DOT"
        " files of the graph before and after fusion (dot, with PNG and SVG when Graphviz's"
        " dot is on the PATH) into --out",
    )
    parser.add_argument("--out", default="graphc-dump", help="where --dump writes files")
    parser.add_argument(
        "--dump-passes",
        metavar="DIR",
        default=None,
        help="write the training graph before and after every pass (text and DOT) into DIR",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="say why each kernel that was compiled was not found in the cache",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    model = load_model_file(args.model, dict(args.option))
    symbol = model.symbol
    shapes = {**model.input_shapes, **dict(args.shape)}
    arg_shapes, out_shapes, _ = symbol.infer_shape(**shapes)
    dumps = set(args.dump)
    out = Path(args.out)
    if "ir" in dumps:
        print(symbol.debug_str(**shapes))
    if "json" in dumps:
        print(symbol.tojson())
    data_names = set(shapes) | non_differentiable_arguments(symbol)
    params = [(n, s) for n, s in zip(symbol.list_arguments(), arg_shapes) if n not in data_names]
    # What is compiled: the forward graph, or with --train the forward and the gradient.
    compiled, what = symbol, "forward"
    if args.train or "grad" in dumps:
        gradients = gc.grad(symbol, [name for name, _ in params])
        if "grad" in dumps:
            print(gc.Group(gradients).debug_str(**shapes))
        if args.train:
            compiled, what = gc.Group([symbol, *gradients]), "forward and backward"
    dump = pass_dumper(args.dump_passes, shapes) if args.dump_passes else None
    optimized = gc.optimize(
        compiled, level=args.opt_level, shapes=shapes, dump=dump, forward_outputs=len(symbol)
    )
    if "optimized" in dumps:
        print(optimized.debug_str(**shapes))
    if "dot" in dumps:
        _write_dot(out, compiled, optimized, shapes)
    fused = sum(1 for node in optimized.graph.nodes if node.op == "_fused")
    print(f"model:      {args.model}")
    print(f"outputs:    {', '.join(f'{n} {s}' for n, s in zip(symbol.list_outputs(), out_shapes))}")
    print(f"parameters: {len(params)} arrays, {sum(math.prod(s) for _, s in params):,} values")
    print(
        f"graph:      {len(compiled.graph.nodes)} nodes ({what}), after the passes"
        f" (-O{args.opt_level}) {len(optimized.graph.nodes)}, {fused} fused groups"
    )
    ctx = gc.gpu() if args.target == "cuda" else gc.cpu()
    before = set(_kernel_files())
    compile_log.clear()
    start = time.perf_counter()
    if args.train:
        stats = _compile_training(model, symbol, shapes, args.opt_level, ctx)
    else:
        stats = _compile_forward(symbol, shapes, args.opt_level, ctx)
    seconds = time.perf_counter() - start
    _report(compile_log.records(), stats, seconds, before if args.explain else None)
    if "kernels" in dumps:
        _write_kernels(out, compile_log.records())
    return 0


def _compile_forward(symbol, shapes, opt_level, ctx) -> dict:
    """Bind for inference and run once on zeros: every forward kernel is compiled."""
    executor = symbol.simple_bind(ctx, grad_req="null", opt_level=opt_level, **shapes)
    executor.forward(is_train=False)
    stats = executor.stats()
    print(f"bound:      {ctx} for inference, {stats['kernels_per_step']} kernels a pass")
    return stats


def _compile_training(model_file, symbol, shapes, opt_level, ctx) -> dict:
    """Compile what ``Model.fit`` runs for these shapes, by fitting one batch of zeros."""
    labels = list(model_file.label_names or label_names_of(loss_heads(symbol)))
    data_names = [name for name in shapes if name not in labels]
    if not data_names:
        raise ValueError("--train needs the shape of at least one data input (--shape)")
    arg_shapes = dict(zip(symbol.list_arguments(), symbol.infer_shape(**shapes)[0]))
    batch = shapes[data_names[0]][0]
    data = {name: np.zeros(shapes[name], dtype=np.float32) for name in data_names}
    label = {name: np.zeros(arg_shapes[name], dtype=np.float32) for name in labels}
    model = gc.Model(symbol, ctx, data_names=data_names, label_names=labels, opt_level=opt_level)
    start = time.perf_counter()
    model.fit(gc.io.NDArrayIter(data, label, batch_size=batch), num_epoch=1, verbose=False)
    print(
        f"training:   {model.fit_path}, one batch of {batch} in {time.perf_counter() - start:.2f} s"
    )
    return model.stats()


def _report(records, stats: dict, seconds: float, before: set | None) -> None:
    counts = {outcome: 0 for outcome in compile_log.OUTCOMES}
    for record in records:
        counts[record.outcome] += 1
    found = ", ".join(f"{count} {outcome}" for outcome, count in counts.items())
    print(f"kernels:    {len(records)} found: {found}")
    compiled = sum(r.seconds for r in records if r.outcome != compile_log.MEMORY)
    print(
        f"compile:    {compiled:.2f} s of kernels, {seconds:.2f} s in all (compiles by workers"
        " overlap this process's)"
    )
    print(f"memory:     {stats['planned_peak_bytes']:,} bytes planned at the peak")
    for record in sorted(records, key=lambda r: -r.seconds):
        if record.outcome == compile_log.MEMORY:
            continue
        print(f"  {compile_log.describe(record)}")
        if before is not None and record.outcome in (compile_log.COMPILED, compile_log.WORKER):
            print(f"      why: {_why(record, before)}")
    for name in sorted(REBUILT) if before is not None else ():
        print(f"  rebuilt:  {name}: its cached source was damaged (cut short or altered)")


def _why(record, before: set) -> str:
    """Why a kernel was compiled, not loaded: what the cache held before this run."""
    module = record.function.rsplit(".", 1)[0]
    if module.startswith(GENERATED_PACKAGE + "."):
        name = module.split(".", 1)[1] + ".py"
        if name in before:
            return (
                "machine code missing: its source was cached (sources name their dtypes) but"
                " Numba's entry for it was damaged, removed or written by another Numba"
            )
        return _why_new_source(_kernel_source(name), before)
    return (
        "new argument types: graphc's own kernel had no machine code for them in Numba's"
        " cache (a new dtype or layout, a new Numba, or an empty cache)"
    )


_NUMBERS = re.compile(r"(?<![\w.])\d+(\.\d+)?([eE][-+]?\d+)?")
_DTYPES = re.compile(r"\b(float|int|uint|complex)(8|16|32|64|128)\b|\bbool_?\b")
_cached_sources: dict[str, str] = {}


def _why_new_source(source: str, before: set) -> str:
    """A generated kernel's file is named by a hash of its source and the versions of
    graphc, Numba and llvmlite, so a new file is a new source or a new version; the
    sources cached before tell which: the same text (another version), the same text but
    for its numbers (another shape) or its dtype names (another dtype), or none alike."""
    sources = [_kernel_source(name) for name in before]
    if source in sources:
        return (
            "version changed: this source was compiled before by another graphc, Numba or"
            " llvmlite version (or other graphc kernels it calls), which key the cache"
        )
    shapeless = _NUMBERS.sub("N", source)
    if any(_NUMBERS.sub("N", other) == shapeless for other in sources):
        return "new shape: the same kernel was compiled before for other sizes or constants"
    typeless = _DTYPES.sub("T", source)
    if any(_DTYPES.sub("T", other) == typeless for other in sources):
        return "new dtype: the same kernel was compiled before for another element type"
    if any(
        _DTYPES.sub("T", _NUMBERS.sub("N", other)) == _DTYPES.sub("T", shapeless)
        for other in sources
    ):
        return "new shape and dtype: the same kernel was compiled before for others"
    return (
        "new kernel source: a graph, fusion or kernel generator not compiled before (or an"
        " empty cache)"
    )


def _kernel_source(name: str) -> str:
    """The source body of the cached kernel file ``name`` (read once)."""
    if name not in _cached_sources:
        try:
            text = (cache_dir() / "kernels" / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
        _cached_sources[name] = text.partition("\n")[2]
    return _cached_sources[name]


def _kernel_files() -> list[str]:
    directory = cache_dir() / "kernels"
    return [path.name for path in directory.glob("k_*.py")] if directory.is_dir() else []


def _write_kernels(out: Path, records) -> None:
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for record in records:
        module = record.function.rsplit(".", 1)[0]
        if module.startswith(GENERATED_PACKAGE + "."):
            source = cache_dir() / "kernels" / (module.split(".", 1)[1] + ".py")
            if source.exists() and not (out / source.name).exists():
                shutil.copyfile(source, out / source.name)
                written += 1
    print(f"kernels:    {written} generated kernel sources written to {out}")


def _write_dot(out: Path, training, optimized, shapes) -> None:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, symbol in (("before-fusion", training), ("after-fusion", optimized)):
        path = out / f"{name}.dot"
        path.write_text(to_dot(symbol, shapes), encoding="utf-8")
        paths.append(path)
    drawn = ""
    dot = shutil.which("dot")
    if dot is not None:  # Graphviz draws them when it is there
        for path in paths:
            for fmt in ("png", "svg"):
                subprocess.run(
                    [dot, f"-T{fmt}", str(path), "-o", str(path.with_suffix(f".{fmt}"))],
                    check=True,
                    timeout=120,
                )
        drawn = " and drawn as PNG and SVG"
    print(f"dot:        {', '.join(map(str, paths))} written{drawn}")


__all__ = ["add_parser", "parse_shape", "run"]
