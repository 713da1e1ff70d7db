"""``model-card.md``: what the model is, what it was trained on, how good it is, and its limits.

Written for the person deciding whether to promote the version, after the model cards of
Mitchell et al. (2019): details, intended use, data, metrics, fairness, limitations. The
numbers come from the same summary as ``metrics.json``; the limitations are the ones kubeloop
knows to be true of every model it trains, plus the ones this trial's data shows.
"""

from __future__ import annotations

from typing import Any

from kubeloop.trainer.evaluate import SMALL_GROUP_ROWS


def render_card(summary: dict[str, Any]) -> str:
    """The model card as Markdown."""
    model, dataset, rows = summary["model"], summary["dataset"], summary["rows"]
    task = summary["task"]
    lines = [
        f"# Model card: {model['name']} (trial {summary['trial']})",
        "",
        "## Model details",
        "",
        f"- **Task**: {task}",
        f"- **Estimator**: scikit-learn `{model['estimator']}` inside one pipeline with its "
        "preprocessing (median imputation"
        + (" and standardisation" if summary.get("scaled") else "")
        + " of numbers; most-frequent imputation and one-hot encoding of categories)",
        f"- **Parameters**: {_params(summary['params'])}",
        f"- **Format**: ONNX (opset {summary['onnx']['opset']}), parity-checked against "
        f"scikit-learn on {summary['parity']['rows']} test rows "
        f"(max deviation {summary['parity']['maxDeviation']:.3g})",
        f"- **Produced by**: kubeloop {summary['kubeloopVersion']}"
        + (f", TrainingRun `{summary['trainingRun']}`" if summary.get("trainingRun") else "")
        + f", seed {summary['seed']}, {summary['createdAt']}",
        "",
        "## Intended use",
        "",
        f"Scoring rows that have the feature columns listed under Data, drawn from the same "
        f"population as dataset `{dataset['name']}`, to "
        + (
            f"predict `{summary['target']}` among the classes {', '.join(f'`{label}`' for label in summary['labels'])}."
            if task == "classification"
            else f"estimate `{summary['target']}`."
        ),
        "It is not intended for decisions about people without human review, nor for data "
        "that differs from the training data (watch the drift monitor of its Deployment).",
        "",
        "## Data",
        "",
        f"- **Dataset**: `{dataset['name']}`, version `{dataset['version']}`",
        f"- **Snapshot**: `{dataset['snapshotURI']}`",
        f"- **Target**: `{summary['target']}`",
        "- **Rows**: " + ", ".join(f"{name} {count}" for name, count in summary["rows"].items()),
        f"- **Split**: {summary.get('splitNote') or 'seeded'}",
        "- **Features**: "
        + ", ".join(
            f"`{item['name']}` ({item['type']})" for item in summary["signature"]["inputs"]
        ),
    ]
    if summary.get("excludedColumns"):
        lines.append(
            "- **Not used as features**: "
            + "; ".join(f"`{name}`: {why}" for name, why in summary["excludedColumns"].items())
        )
    lines += [
        "",
        "## Metrics",
        "",
        f"Selection metric `{summary['metric']}` on the validation set: "
        f"**{_fmt(summary.get('score'))}**. Test set:",
        "",
        "| metric | test | validation |",
        "|---|---|---|",
    ]
    for name, value in summary["test"].items():
        lines.append(f"| {name} | {_fmt(value)} | {_fmt(summary['validation'].get(name))} |")
    latency = summary["latency"]
    if latency:
        lines += [
            "",
            f"Single-row ONNX latency: p50 {_fmt(latency.get('p50Ms'))} ms, p99 "
            f"{_fmt(latency.get('p99Ms'))} ms (one thread, {latency.get('runs')} runs).",
        ]
    if summary.get("undefinedMetrics"):
        lines += [
            "",
            "Not reported (undefined on this data): "
            + ", ".join(summary["undefinedMetrics"])
            + ".",
        ]
    lines += ["", "## Fairness", ""]
    fairness = summary.get("fairness") or {}
    if not fairness:
        lines.append(
            "No sensitive column was declared"
            if task == "classification"
            else "Fairness metrics are computed for classification models only"
        )
        lines[-1] += "; see the per-slice metrics in the report instead."
    for column, block in fairness.items():
        values = ", ".join(f"{name} {_fmt(value)}" for name, value in block["metrics"].items())
        lines.append(
            f"- `{column}` (positive class {', '.join(f'`{c}`' for c in block['positiveClasses'])}): "
            f"{values or 'undefined on this data'}; groups: "
            + ", ".join(f"{group} ({count} rows)" for group, count in block["groups"].items())
        )
    lines += [
        "",
        "## Limitations",
        "",
        f"- Test metrics are estimates from {rows['test']} held-out rows of one "
        "snapshot; they say nothing about data collected later or elsewhere.",
        "- Categories not seen in training are accepted and ignored (all-zero encoding); "
        "missing values are imputed with training statistics.",
        "- Numbers are read as 32-bit floats by the ONNX model; integers above 16,777,216 lose "
        "precision.",
        f"- Slice and fairness groups with fewer than {SMALL_GROUP_ROWS} test rows give noisy "
        "numbers; fairness is measured only for the declared sensitive columns, and excluding a "
        "sensitive column from the features does not remove its correlated proxies.",
    ]
    for warning in summary.get("warnings") or []:
        lines.append(f"- scikit-learn warned while fitting: {warning}")
    lines.append("")
    return "\n".join(lines)


def _params(params: dict[str, Any]) -> str:
    if not params:
        return "scikit-learn defaults"
    return ", ".join(f"`{name}={value!r}`" for name, value in sorted(params.items()))


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
