"""What a person reads about a training run: one line per epoch, a final metrics table, a learning curve."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from raymmrec.recsys.trainer import TrainResult


def epoch_line(record: Mapping[str, Any], metric: str = "recall@20") -> str:
    """One progress line for an epoch record of the trainer."""
    parts = [f"epoch {record['epoch']:>4}", f"loss {record['train_loss']:.4f}"]
    if f"valid/{metric}" in record:
        short = metric.replace("recall", "R").replace("ndcg", "N")
        parts.append(f"valid {short} {record[f'valid/{metric}']:.4f} (cold {record[f'valid/cold_{metric}']:.4f})")
        parts.append(f"test {short} {record[f'test/{metric}']:.4f}")
        parts.append(f"best epoch {record['best_epoch']}" + (" *" if record.get("improved") else ""))
    parts.append(f"{record['train_seconds']:.1f}s train + {record['eval_seconds']:.1f}s eval")
    if record.get("stop_reason"):
        parts.append(f"stop: {record['stop_reason']}")
    return " | ".join(parts)


def metric_rows(result: TrainResult, ks: Sequence[int] = (10, 20, 50)) -> list[dict[str, Any]]:
    """Valid and test metrics at the best epoch, overall and on cold items, as table rows."""
    rows = []
    for split, metrics in (("valid", result.best_valid), ("test", result.test_at_best)):
        for scope, prefix in (("all", ""), ("cold", "cold_")):
            row: dict[str, Any] = {"split": split, "items": scope}
            for name in ("recall", "ndcg"):
                for k in ks:
                    row[f"{name}@{k}"] = metrics.get(f"{prefix}{name}@{k}", float("nan"))
            rows.append(row)
    return rows


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A fixed-width text table (floats with 4 decimals)."""
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(c for r in rows for c in r))     # every column, in order of appearance
    cells = [[f"{r[c]:.4f}" if isinstance(r.get(c), float) else str(r.get(c, "-")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.rjust(w) if i > 1 else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths)))
            for row in cells]
    return "\n".join(out)


def result_table(result: TrainResult, ks: Sequence[int] = (10, 20, 50)) -> str:
    """The final table: model, stop reason, best epoch, then metrics at the best epoch."""
    head = (f"{result.model_name}: {result.stop_reason} after {result.epochs_run} epochs, best epoch "
            f"{result.best_epoch}, {result.seconds:.1f}s")
    return head + "\n" + format_table(metric_rows(result, ks))


def learning_curve(history: Sequence[Mapping[str, Any]], metric: str = "recall@20"):
    """Figure: training loss and valid / test / cold-valid `metric` per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot([r["epoch"] for r in history], [r["train_loss"] for r in history])
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("train loss")
    evaluated = [r for r in history if f"valid/{metric}" in r]
    for key, label in ((f"valid/{metric}", "valid"), (f"test/{metric}", "test"),
                       (f"valid/cold_{metric}", "valid, cold items")):
        ax_metric.plot([r["epoch"] for r in evaluated], [r[key] for r in evaluated], label=label)
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylabel(metric)
    ax_metric.legend()
    fig.tight_layout()
    return fig
