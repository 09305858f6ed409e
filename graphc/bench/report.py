"""The table: Markdown for the terminal and BENCHMARKS.md, JSON, and a bar chart.

Ratios are a system's seconds over the best peer's (the fastest system of the row that is
not graphc, the NumPy baseline included), so below 1 is faster than every peer.
"""

from __future__ import annotations

import json

from graphc.bench.peers.peer_protocol import QUALITY
from graphc.bench.runner import Row
from graphc.bench.tasks import SETTINGS
from graphc.training.plot import matplotlib_modules


def best_peer_seconds(rows: list[Row]) -> float | None:
    """The fastest whole training of one model among the systems that are not graphc."""
    times = [row.seconds for row in rows if row.status == "ok" and row.system.is_peer]
    times += [row.seconds for row in rows if row.status == "ok" and row.system.name == "numpy"]
    return min(times) if times else None


def markdown(by_model: dict[str, list[Row]], data: dict[str, str], repeat: int) -> str:
    lines = [f"Seconds for the whole training, median of {repeat}; x best peer = seconds over"]
    lines.append("the fastest system that is not graphc (below 1: faster than every peer).")
    lines.append("")
    for model, rows in by_model.items():
        lines += _model_table(model, rows, data[model])
    return "\n".join(lines)


def _model_table(model: str, rows: list[Row], data: str) -> list[str]:
    settings = SETTINGS[model]
    quality = _quality_name(model)
    lines = [f"### {settings['title']}: {_settings_line(settings)}", "", f"Data: {data}.", ""]
    lines.append(
        f"| system | seconds | samples/s | x best peer | first step cold s | warm s |"
        f" first loss | final loss | {quality} | version |"
    )
    lines.append("| --- " * 10 + "|")
    best = best_peer_seconds(rows)
    for row in rows:
        if row.status != "ok":
            lines.append(f"| {row.system.label} | {row.status}: {row.reason} |" + " |" * 8)
            continue
        ratio = f"{row.seconds / best:.2f}" if best else ""
        warm = min(row.first_step_warm_s) if row.first_step_warm_s else None
        cells = [
            row.system.label,
            _number(row.seconds),
            _number(row.samples_per_s),
            ratio,
            _number(row.first_step_cold_s) if row.first_step_cold_s is not None else "-",
            _number(warm),
            f"{row.first_loss:.5g}",
            f"{row.final_loss:.5g}",
            _quality_text(model, row.quality),
            row.version,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _settings_line(settings: dict) -> str:
    epochs = settings["epochs"]
    parts = [f"{epochs:,} epoch{'s' if epochs != 1 else ''}", f"batch {settings['batch']}"]
    if "seq_len" in settings:
        parts.append(f"BPTT {settings['seq_len']}")
    optimizer = f"{settings['optimizer']} lr {settings['learning_rate']}"
    for key in ("momentum", "wd"):
        if key in settings:
            optimizer += f" {key} {settings[key]}"
    return ", ".join([*parts, optimizer])


def _quality_name(model: str) -> str:
    return QUALITY.get(model, "test accuracy")


def _quality_text(model: str, value: float) -> str:
    if model in QUALITY:
        return f"{value:.4g}"
    return f"{100 * value:.2f}%"


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def as_json(by_model: dict[str, list[Row]], header: dict) -> dict:
    """Everything the table shows, with every repeat's seconds, under ``header`` (the
    machine, the command, the data)."""
    results = []
    for model, rows in by_model.items():
        best = best_peer_seconds(rows)
        for row in rows:
            results.append(
                {
                    "model": model,
                    "system": row.system.name,
                    "label": row.system.label,
                    "status": row.status,
                    "reason": row.reason,
                    "version": row.version,
                    "seconds": row.seconds,
                    "seconds_each": row.train_s,
                    "samples": row.samples,
                    "samples_per_s": row.samples_per_s,
                    "x_best_peer": row.seconds / best if best and row.seconds else None,
                    "first_step_cold_s": row.first_step_cold_s,
                    "first_step_warm_s": row.first_step_warm_s,
                    "first_loss": row.first_loss,
                    "final_loss": row.final_loss,
                    "quality_name": _quality_name(model),
                    "quality": row.quality,
                    **row.details,
                }
            )
    return {**header, "results": results}


def write_json(path: str, document: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1)


def plot(path: str, by_model: dict[str, list[Row]]) -> None:
    """Seconds per model per system as grouped bars, on a log scale (LinReg's hundredths
    of a second and LeNet's minutes on one chart)."""
    figure_class, _ = matplotlib_modules("graphc bench --plot")
    systems = []
    for rows in by_model.values():
        systems += [row.system.label for row in rows if row.status == "ok"]
    systems = list(dict.fromkeys(systems))
    figure = figure_class(figsize=(max(6, 1.6 * len(by_model)), 4.5))
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(systems))
    for index, label in enumerate(systems):
        positions, heights = [], []
        for slot, rows in enumerate(by_model.values()):
            for row in rows:
                if row.system.label == label and row.status == "ok":
                    positions.append(slot + index * width)
                    heights.append(row.seconds)
        axes.bar(positions, heights, width, label=label)
    axes.set_xticks([slot + 0.4 - width / 2 for slot in range(len(by_model))])
    axes.set_xticklabels([SETTINGS[model]["title"] for model in by_model], fontsize=8)
    axes.set_yscale("log")
    axes.set_ylabel("seconds for the whole training (log)")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
