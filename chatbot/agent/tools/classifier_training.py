"""Training the `classify` tool's models: a TF-IDF + logistic-regression pipeline per task (ticket
intent, priority), fitted on labelled tickets, measured on a fixed stratified held-out split
against always guessing the majority label, and stored as a numbered `ClassifierVersion`.

A version becomes the one that answers only when it beats that baseline; otherwise it is kept,
inactive, with the reason, and the version already active keeps answering (the same rule as the
reward model, evaluation/exports/reward.py, which this layer may not import). Training twice on
the same rows returns the version already made from them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Max

from chatbot.models import ClassifierVersion

# The tasks the tool serves, each read from the label column of the same name.
TASKS = ("intent", "priority")
DEFAULT_TEXT_COLUMNS = ("subject", "body")
DEMO_TICKETS = settings.BASE_DIR / "deploy" / "demo-reporting" / "tickets.csv"

MIN_ROWS = 20
# Each label must reach both sides of the split and still leave the model two examples to learn.
MIN_PER_LABEL = 3
HELD_OUT_SHARE = 0.25
SEED = 0
VERSION_LOCK = 0x5E3A_0C1A  # pg advisory lock key for classifier versions
ALGORITHM = "tf-idf (words 1-2, chars 2-5) + logistic regression"
# Inverse regularisation. 5-fold cross-validation on the demo tickets' 300 training rows, intent
# / priority accuracy: C=1 0.91 / 0.44, C=3 0.91 / 0.45, C=10 0.89 / 0.47, C=30 0.88 / 0.46.
# Level within noise on intent; 10 is best on priority, the task with less to go on.
C = 10.0


class TrainingDataError(ValueError):
    """The labelled data cannot train a classifier; the message says what to fix."""


# --- reading labelled tickets --------------------------------------------------------------------


def labelled_rows_read(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV (with a header) or JSONL file, as strings."""
    if not path.is_file():
        raise TrainingDataError(f"No file at {path}.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingDataError(f"Cannot read {path}: {exc}.") from None
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        return _jsonl_rows(text, path)
    if path.suffix.lower() != ".csv":
        raise TrainingDataError(f"{path.name}: expected a .csv or .jsonl file of labelled tickets.")
    reader = csv.DictReader(io.StringIO(text))
    return [{k: v or "" for k, v in row.items() if k is not None} for row in reader]


def _jsonl_rows(text: str, path: Path) -> list[dict[str, str]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TrainingDataError(f"{path.name} line {number} is not JSON ({exc.msg}).") from None
        if not isinstance(record, dict):
            raise TrainingDataError(f"{path.name} line {number} is not a JSON object.")
        rows.append({str(k): "" if v is None else str(v) for k, v in record.items()})
    return rows


def labelled_texts(
    rows: list[dict[str, str]], *, text_columns: tuple[str, ...], label_column: str
) -> tuple[list[str], list[str]]:
    """(texts, labels) from the rows that have both some text and a label."""
    columns = set().union(*(row.keys() for row in rows)) if rows else set()
    missing = [c for c in (*text_columns, label_column) if c not in columns]
    if missing:
        found = ", ".join(sorted(columns)) or "none"
        raise TrainingDataError(f"Missing column(s) {', '.join(missing)} (found: {found}).")
    texts, labels = [], []
    for row in rows:
        text = "\n".join(row.get(c, "").strip() for c in text_columns).strip()
        label = row.get(label_column, "").strip()
        if text and label:
            texts.append(text)
            labels.append(label)
    return texts, labels


def training_check(texts: list[str], labels: list[str]) -> None:
    counts = Counter(labels)
    if len(texts) < MIN_ROWS:
        raise TrainingDataError(
            f"Only {len(texts)} labelled rows; training needs at least {MIN_ROWS}."
        )
    if len(counts) < 2:
        only = next(iter(counts), "none")
        raise TrainingDataError(
            f"Every row has the same label ({only}); a classifier needs at least two labels."
        )
    rare = sorted(label for label, n in counts.items() if n < MIN_PER_LABEL)
    if rare:
        raise TrainingDataError(
            f"Too few examples of {', '.join(rare)}: each label needs at least {MIN_PER_LABEL} "
            "rows (label more tickets, or merge the rare labels)."
        )
    if round(len(texts) * HELD_OUT_SHARE) < len(counts):
        raise TrainingDataError(
            f"{len(counts)} labels are too many for {len(texts)} rows: the held-out quarter "
            "must hold at least one row of each. Label more tickets."
        )


def data_sha256(texts: list[str], labels: list[str]) -> str:
    payload = json.dumps([texts, labels], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# --- fitting -------------------------------------------------------------------------------------


def pipeline() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    # Characters as well as words: ticket text carries typos ("recieve", "loign") and
    # inflections a word vocabulary of a few hundred tickets has not seen.
    features = FeatureUnion(
        [
            ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
            (
                "chars",
                TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
            ),
        ]
    )
    model = LogisticRegression(C=C, max_iter=2000, random_state=SEED)
    return Pipeline([("features", features), ("model", model)])


def _fit(texts: list[str], labels: list[str]) -> tuple[Any, dict[str, Any]]:
    from sklearn.metrics import classification_report
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(
        texts, labels, test_size=HELD_OUT_SHARE, stratify=labels, random_state=SEED
    )
    fitted = pipeline().fit(x_train, y_train)
    predicted = list(fitted.predict(x_test))
    accuracy = sum(p == y for p, y in zip(predicted, y_test, strict=True)) / len(y_test)
    majority = Counter(y_train).most_common(1)[0][0]
    baseline = sum(y == majority for y in y_test) / len(y_test)
    report = classification_report(y_test, predicted, output_dict=True, zero_division=0)
    per_label = {
        label: {
            "precision": round(float(report[label]["precision"]), 4),
            "recall": round(float(report[label]["recall"]), 4),
            "f1": round(float(report[label]["f1-score"]), 4),
            "support": int(report[label]["support"]),
        }
        for label in sorted(set(labels))
    }
    metrics = {
        "trained_on": len(y_train),
        "held_out": len(y_test),
        "heldout_accuracy": accuracy,
        "baseline_accuracy": baseline,
        "majority_label": majority,
        "macro_f1": round(float(report["macro avg"]["f1-score"]), 4),
        "per_label": per_label,
        "label_counts": dict(sorted(Counter(labels).items())),
    }
    return fitted, metrics


def inactive_reason(metrics: dict[str, Any]) -> str:
    """Why a version must not answer, or "": a classifier that cannot beat always guessing the
    commonest label on its own held-out rows only adds noise."""
    accuracy, baseline = metrics["heldout_accuracy"], metrics["baseline_accuracy"]
    if accuracy > baseline:
        return ""
    return (
        f"Held-out accuracy {accuracy:.0%} does not beat the majority baseline of {baseline:.0%} "
        f"on the same {metrics['held_out']} held-out rows, so it was kept inactive."
    )


# --- versions ------------------------------------------------------------------------------------


def _same_data(task: str, sha: str) -> ClassifierVersion | None:
    return (
        ClassifierVersion.objects.filter(task=task, data_sha256=sha, algorithm=ALGORITHM)
        .defer("artifact")
        .order_by("-version")
        .first()
    )


def classifier_train(
    *,
    task: str,
    texts: list[str],
    labels: list[str],
    created_by: User | None = None,
    activate: bool = True,
    source: str = "",
) -> ClassifierVersion:
    """Train the next version of `task`'s classifier. With `activate` it becomes the active one
    when it beats the majority baseline; it is stored either way. The same rows (and algorithm)
    again return the version already trained on them, unchanged."""
    if task not in TASKS:
        raise TrainingDataError(f"Unknown task {task!r}; the tasks are {', '.join(TASKS)}.")
    if len(texts) != len(labels):
        raise TrainingDataError(f"{len(texts)} texts but {len(labels)} labels.")
    sha = data_sha256(texts, labels)
    existing = _same_data(task, sha)
    if existing is not None:
        return existing
    training_check(texts, labels)
    fitted, metrics = _fit(texts, labels)
    reason = inactive_reason(metrics) if activate else "Trained without being made active."
    if reason:
        metrics["inactive_reason"] = reason
    if source:
        metrics["source"] = source
    import joblib

    buffer = io.BytesIO()
    joblib.dump(fitted, buffer)
    with transaction.atomic():
        # Two trainings finishing at once take consecutive versions, and the second of two on
        # the same rows finds the first's.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [VERSION_LOCK])
        existing = _same_data(task, sha)
        if existing is not None:
            return existing
        latest = ClassifierVersion.objects.filter(task=task).aggregate(v=Max("version"))["v"]
        if not reason:
            ClassifierVersion.objects.filter(task=task, active=True).update(active=False)
        return ClassifierVersion.objects.create(
            task=task,
            version=(latest or 0) + 1,
            artifact=buffer.getvalue(),
            algorithm=ALGORITHM,
            labels=sorted(set(labels)),
            trained_on=metrics["trained_on"],
            held_out=metrics["held_out"],
            heldout_accuracy=metrics["heldout_accuracy"],
            baseline_accuracy=metrics["baseline_accuracy"],
            metrics=metrics,
            data_sha256=sha,
            active=not reason,
            created_by=created_by,
        )


@transaction.atomic
def classifier_activate(*, version: ClassifierVersion) -> ClassifierVersion:
    """Make one version the one that answers for its task (rolling back a worse one)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [VERSION_LOCK])
    ClassifierVersion.objects.filter(task=version.task, active=True).exclude(pk=version.pk).update(
        active=False
    )
    ClassifierVersion.objects.filter(pk=version.pk).update(active=True)
    version.active = True
    return version


def classifiers_train_file(
    *,
    path: Path,
    tasks: tuple[str, ...] | None = None,
    text_columns: tuple[str, ...] = DEFAULT_TEXT_COLUMNS,
    label_column: str = "",
    created_by: User | None = None,
) -> list[ClassifierVersion]:
    """One version per task from a labelled file; each task reads the column named after it
    unless `label_column` names another (only with a single task). Without `tasks`, every task
    whose column the file has."""
    if label_column and (tasks is None or len(tasks) != 1):
        raise TrainingDataError("A label column can only be given for a single task.")
    rows = labelled_rows_read(path)
    if not rows:
        raise TrainingDataError(f"{path.name} has no rows.")
    if tasks is None:
        tasks = tuple(task for task in TASKS if task in rows[0])
        if not tasks:
            raise TrainingDataError(
                f"{path.name} has no label column: expected one of {', '.join(TASKS)}."
            )
    trained = []
    for task in tasks:
        texts, labels = labelled_texts(
            rows, text_columns=text_columns, label_column=label_column or task
        )
        trained.append(
            classifier_train(
                task=task, texts=texts, labels=labels, created_by=created_by, source=path.name
            )
        )
    return trained


def classifiers_demo_ensure() -> list[ClassifierVersion]:
    """The demo's classifiers (`bootstrap --demo`): each task without an active version is
    trained on the bundled demo tickets; a task that has one is left alone."""
    have = set(ClassifierVersion.objects.filter(active=True).values_list("task", flat=True))
    missing = tuple(task for task in TASKS if task not in have)
    if not missing:
        return []
    return classifiers_train_file(path=DEMO_TICKETS, tasks=missing)
