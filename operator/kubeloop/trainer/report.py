"""``report.html``: one self-contained page per trial, plots inlined as base64 PNG.

Self-contained because it is read straight from object storage (a presigned URL, a console,
a downloaded file): no scripts, no external styles or images, and a Content-Security-Policy
that forbids loading anything. Plots are drawn with matplotlib's Agg renderer through the
object-oriented ``Figure`` API (no pyplot, no global state, no display needed).

Plots: confusion matrix (classification) or predicted-vs-actual and residuals (regression),
ROC curves (binary: the positive class; multiclass: one-vs-rest per class, at most
``MAX_ROC_CLASSES``), and permutation feature importance. Every value written into the page
is HTML-escaped: column names and categories come from user data.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

MAX_ROC_CLASSES = 10
MAX_CONFUSION_CLASSES = 30
MAX_SCATTER_POINTS = 5000
MAX_IMPORTANCE_BARS = 20


# --- plots -----------------------------------------------------------------------------------


def confusion_png(matrix: list[list[int]], labels: Sequence[str]) -> bytes | None:
    """Heat map of the confusion matrix, counts written in the cells."""
    if not matrix or len(labels) > MAX_CONFUSION_CLASSES:
        return None
    values = np.asarray(matrix, dtype=np.int64)
    size = max(4.0, 0.55 * len(labels) + 2.5)
    figure = Figure(figsize=(size, size * 0.85), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    ticks = np.arange(len(labels))
    axes.set_xticks(ticks, [_short(label) for label in labels], rotation=45, ha="right")
    axes.set_yticks(ticks, [_short(label) for label in labels])
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("Confusion matrix (test set)")
    # The colour scale runs from the smallest count to the largest (imshow's default), so the
    # text turns white past the middle of that range, not past half the largest count: seen
    # in a browser, a 54 on a pale cell of a 47..102 matrix was white on white.
    threshold = (values.min() + values.max()) / 2 if values.size else 0
    for row in range(values.shape[0]):
        for column in range(values.shape[1]):
            count = int(values[row, column])
            axes.text(
                column,
                row,
                str(count),
                ha="center",
                va="center",
                color="white" if count > threshold else "black",
                fontsize=9,
            )
    return _png(figure)


def residuals_png(y_true: Any, y_pred: Any, seed: int = 0) -> bytes | None:
    """Predicted vs actual, and residuals vs predicted (a sample of at most 5000 rows)."""
    actual = np.asarray(y_true, dtype=np.float64)
    predicted = np.asarray(y_pred, dtype=np.float64)
    if len(actual) == 0:
        return None
    if len(actual) > MAX_SCATTER_POINTS:
        keep = np.random.default_rng(seed).choice(len(actual), MAX_SCATTER_POINTS, replace=False)
        actual, predicted = actual[keep], predicted[keep]
    residual = actual - predicted
    figure = Figure(figsize=(10, 4.2), layout="constrained")
    left, right = figure.subplots(1, 2)
    left.scatter(actual, predicted, s=8, alpha=0.5, color="#1f77b4")
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    left.plot([low, high], [low, high], color="#d62728", linewidth=1, label="perfect")
    left.set_xlabel("actual")
    left.set_ylabel("predicted")
    left.set_title("Predicted vs actual (test set)")
    left.legend(loc="upper left")
    right.scatter(predicted, residual, s=8, alpha=0.5, color="#2ca02c")
    right.axhline(0.0, color="#d62728", linewidth=1)
    right.set_xlabel("predicted")
    right.set_ylabel("actual - predicted")
    right.set_title("Residuals (test set)")
    return _png(figure)


def roc_png(y_true: Any, proba: Any, labels: Sequence[str]) -> bytes | None:
    """ROC curve of the positive class (binary) or one-vs-rest curves (multiclass)."""
    truth = np.asarray(y_true, dtype=object)
    scores = np.asarray(proba, dtype=np.float64)
    labels = list(labels)
    shown = [labels[-1]] if len(labels) == 2 else labels[:MAX_ROC_CLASSES]
    curves: list[tuple[str, Any, Any]] = []
    for label in shown:
        positives = truth == label
        if positives.all() or not positives.any():
            continue  # a curve needs both classes
        fpr, tpr, _ = roc_curve(positives, scores[:, labels.index(label)])
        curves.append((label, fpr, tpr))
    if not curves:
        return None
    figure = Figure(figsize=(5.5, 5), layout="constrained")
    axes = figure.add_subplot()
    for label, fpr, tpr in curves:
        area = float(np.trapezoid(tpr, fpr))
        name = f"{_short(label)} (AUC {area:.3f})"
        axes.plot(fpr, tpr, linewidth=1.5, label=name if len(labels) > 2 else f"AUC {area:.3f}")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    title = (
        f"ROC, positive class {_short(labels[-1])!r}" if len(labels) == 2 else "ROC, one-vs-rest"
    )
    axes.set_title(title + " (test set)")
    axes.legend(loc="lower right", fontsize=8)
    return _png(figure)


def importance_png(ranked: list[dict[str, Any]]) -> bytes | None:
    """Horizontal bars of permutation importance (mean ± std), most important on top."""
    if not ranked:
        return None
    top = ranked[:MAX_IMPORTANCE_BARS][::-1]
    figure = Figure(figsize=(7, max(2.5, 0.35 * len(top) + 1.2)), layout="constrained")
    axes = figure.add_subplot()
    positions = np.arange(len(top))
    axes.barh(
        positions,
        [item["mean"] for item in top],
        xerr=[item["std"] for item in top],
        color="#ff7f0e",
        alpha=0.85,
    )
    axes.set_yticks(positions, [_short(item["feature"]) for item in top])
    axes.axvline(0.0, color="black", linewidth=0.8)
    axes.set_xlabel("decrease in score when the column is shuffled")
    axes.set_title("Permutation feature importance (test set)")
    return _png(figure)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96)
    return buffer.getvalue()


def _short(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- HTML ------------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#1d2330;line-height:1.45;padding:0 1rem}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #d8dde6;padding-bottom:.3rem}
.sub{color:#5a6477;margin-top:0}table{border-collapse:collapse;margin:.6rem 0;font-size:.92rem}
th,td{border:1px solid #d8dde6;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f5f9}td.num{text-align:right;font-variant-numeric:tabular-nums}
.plots{display:flex;flex-wrap:wrap;gap:1.2rem}.plots figure{margin:0}
.plots img{max-width:100%;border:1px solid #e3e7ee}.small{color:#a0561a}
.ok{color:#1a7f37;font-weight:600}.note{color:#5a6477;font-size:.9rem}
code{background:#f3f5f9;padding:0 .25rem;border-radius:3px}
"""


def render_html(summary: dict[str, Any], plots: dict[str, bytes | None]) -> str:
    """The whole page from metrics.json's content (``summary``) and the PNG plots."""
    e = html.escape
    model = summary["model"]
    dataset = summary["dataset"]
    title = f"{model['name']} · trial {summary['trial']}"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">",
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="sub">{e(model["estimator"])} ({e(summary["task"])}) trained on dataset '
        f"<code>{e(dataset['name'])}</code> version <code>{e(dataset['version'])}</code>"
        + (
            f" by TrainingRun <code>{e(summary['trainingRun'])}</code>"
            if summary.get("trainingRun")
            else ""
        )
        + f", {e(summary['createdAt'])}</p>",
        "<h2>Metrics</h2>",
        f"<p>Search metric <code>{e(summary['metric'])}</code> on the validation set: "
        f"<b>{_number(summary.get('score'))}</b> ({e(summary['direction'])}).</p>",
        _metric_table(summary["validation"], summary["test"]),
    ]
    figures = [
        (plots.get("confusion"), "Confusion matrix"),
        (plots.get("residuals"), "Residuals"),
        (plots.get("roc"), "ROC curve"),
        (plots.get("importance"), "Permutation feature importance"),
    ]
    shown = [
        f'<figure><img alt="{e(alt)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode("ascii")}"></figure>'
        for png, alt in figures
        if png
    ]
    if shown:
        parts += ["<h2>Plots</h2>", '<div class="plots">', *shown, "</div>"]
    if summary.get("importance"):
        parts += [
            "<h2>Feature importance</h2>",
            _table(
                ["column", "mean decrease", "std"],
                [
                    [e(item["feature"]), _number(item["mean"]), _number(item["std"])]
                    for item in summary["importance"]
                ],
                numeric=(1, 2),
            ),
        ]
    parts += _slice_sections(summary.get("slices", {}))
    parts += _fairness_sections(summary.get("fairness", {}))
    parity, latency = summary["parity"], summary["latency"]
    parts += [
        "<h2>ONNX export</h2>",
        f'<p><span class="ok">Parity check passed</span>: ONNX Runtime reproduces scikit-learn '
        f"on {parity['rows']} test rows, max deviation {_number(parity['maxDeviation'])} "
        f"(tolerance {_number(parity['tolerance'])}). Single-row latency over "
        f"{latency.get('runs', 0)} runs: p50 {_number(latency.get('p50Ms'))} ms, p99 "
        f"{_number(latency.get('p99Ms'))} ms.</p>",
        _table(
            ["file", "sha256", "bytes"],
            [
                [e(name), f"<code>{e(info['sha256'])}</code>", str(info["size"])]
                for name, info in summary.get("artifacts", {}).items()
            ],
            numeric=(2,),
        ),
        "<h2>Parameters</h2>",
        _table(
            ["parameter", "value"],
            [[e(k), f"<code>{e(repr(v))}</code>"] for k, v in sorted(summary["params"].items())],
        ),
        "<h2>Data</h2>",
        _table(
            ["set", "rows"],
            [[e(k), str(v)] for k, v in summary["rows"].items()],
            numeric=(1,),
        ),
        f'<p class="note">{e(summary.get("splitNote") or "")}</p>',
        "<h3>Inputs (signature)</h3>",
        _table(
            ["column", "type", "nullable", "categories"],
            [
                [
                    e(item["name"]),
                    e(item["type"]),
                    "yes" if item.get("nullable") else "no",
                    e(", ".join(item.get("categories") or [])[:300]),
                ]
                for item in summary["signature"]["inputs"]
            ],
        ),
    ]
    if summary.get("excludedColumns"):
        parts += [
            "<h3>Columns not used as features</h3>",
            _table(
                ["column", "why"],
                [[e(k), e(v)] for k, v in summary["excludedColumns"].items()],
            ),
        ]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _metric_table(validation: dict[str, float], test: dict[str, float]) -> str:
    names = list(dict.fromkeys([*validation, *test]))
    return _table(
        ["metric", "validation", "test"],
        [[html.escape(n), _number(validation.get(n)), _number(test.get(n))] for n in names],
        numeric=(1, 2),
    )


def _slice_sections(slices: dict[str, list[dict[str, Any]]]) -> list[str]:
    if not slices:
        return []
    parts = [
        "<h2>Slices (test set)</h2>",
        '<p class="note">Groups with few rows are marked; their numbers are noisy.</p>',
    ]
    for column, groups in slices.items():
        names = list(dict.fromkeys(n for g in groups for n in g["metrics"]))
        rows = [
            [
                html.escape(g["group"])
                + (' <span class="small">(few rows)</span>' if g["small"] else ""),
                str(g["rows"]),
                *[_number(g["metrics"].get(n)) for n in names],
            ]
            for g in groups
        ]
        parts += [
            f"<h3><code>{html.escape(column)}</code></h3>",
            _table(["group", "rows", *names], rows, numeric=tuple(range(1, len(names) + 2))),
        ]
    return parts


def _fairness_sections(blocks: dict[str, dict[str, Any]]) -> list[str]:
    if not blocks:
        return []
    parts = [
        "<h2>Fairness (test set)</h2>",
        '<p class="note">Selection rate = share of a group predicted as the positive class; '
        "true-positive rate = share of a group's actual positives predicted positive. Demographic "
        "parity difference = max - min selection rate; disparate impact ratio = min / max; equal "
        "opportunity difference = max - min true-positive rate.</p>",
    ]
    for column, block in blocks.items():
        headline = block["metrics"]
        parts += [
            f"<h3><code>{html.escape(column)}</code></h3>",
            _table(
                ["metric", "value"],
                [[html.escape(k), _number(v)] for k, v in headline.items()],
                numeric=(1,),
            ),
        ]
        for positive, detail in block["perClass"].items():
            groups = block["groups"]
            parts.append(f'<p class="note">positive class <code>{html.escape(positive)}</code></p>')
            parts.append(
                _table(
                    ["group", "rows", "selection rate", "true-positive rate"],
                    [
                        [
                            html.escape(group),
                            str(count),
                            _number(detail["selectionRate"].get(group)),
                            _number(detail["truePositiveRate"].get(group)),
                        ]
                        for group, count in groups.items()
                    ],
                    numeric=(1, 2, 3),
                )
            )
    return parts


def _table(header: list[str], rows: Iterable[list[str]], numeric: tuple[int, ...] = ()) -> str:
    """A table; header cells are escaped here, body cells must already be."""
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell}</td>' if index in numeric else f"<td>{cell}</td>"
            for index, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _number(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))
