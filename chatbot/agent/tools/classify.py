"""classify: a trained classical text classifier (ticket intent or priority), answering with the
label, its probability and the runners-up. The models are trained by `manage.py
train_classifier` (chatbot/agent/tools/classifier_training.py); the active version per task
answers, and a newly activated one is picked up on the next call.
"""

from __future__ import annotations

import io
import threading
from typing import Any, ClassVar

from chatbot.agent.tools.base import Tool, ToolContext, ToolFailed, ToolResult
from chatbot.agent.tools.classifier_selectors import (
    ActiveClassifier,
    classifier_active,
    classifier_artifact,
    classifiers_active,
)
from chatbot.agent.tools.classifier_training import TASKS

TOP_N = 3
MAX_TEXT = 5000

# task -> (version pk, fitted pipeline). One model per task stays loaded: finding the active
# version is one cheap query per call, unpickling its artifact happens only when it changes.
# Keyed by pk, not version number, because a deleted and retrained task reuses numbers.
_loaded: dict[str, tuple[int, Any]] = {}
_load_lock = threading.Lock()


def _pipeline(active: ActiveClassifier) -> Any:
    with _load_lock:
        cached = _loaded.get(active.task)
        if cached is not None and cached[0] == active.pk:
            return cached[1]
        raw = classifier_artifact(pk=active.pk)
        if raw is None:
            return None
        import joblib

        # Only classifier_train writes artifacts: loading one is loading our own.
        fitted = joblib.load(io.BytesIO(raw))
        _loaded[active.task] = (active.pk, fitted)
        return fitted


def _percent(value: float | None) -> str:
    return "?" if value is None else f"{value:.0%}"


class Classify(Tool):
    name = "classify"
    label = "Ticket classifier"
    description = (
        "Classify a support ticket's text with a trained classifier: its intent (what the "
        "customer wants) or its priority. Gives the most likely label and how sure it is."
    )
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "text": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_TEXT,
                "description": "The ticket's text (subject and body) to classify.",
            },
            "task": {
                "type": "string",
                "enum": list(TASKS),
                "description": "What to predict: 'intent' or 'priority'.",
            },
        },
        "required": ["text", "task"],
        "additionalProperties": False,
    }
    default_timeout_s = 10.0
    example = (
        "What kind of ticket is this: 'I was charged twice, please refund'?",
        {"task": "intent", "text": "I was charged twice, please refund"},
    )

    def describe(self, options: dict[str, Any]) -> str:
        active = classifiers_active()
        if not active:
            return self.description + " No classifier is trained yet."
        tasks = "; ".join(
            f"{task} (labels: {', '.join(a.labels)})" for task, a in sorted(active.items())
        )
        return f"{self.description} Trained tasks: {tasks}."

    def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        task = str(arguments.get("task") or "")
        text = str(arguments.get("text") or "").strip()[:MAX_TEXT]
        if task not in TASKS:
            raise ToolFailed(f"There is no '{task[:40]}' classifier; choose {' or '.join(TASKS)}.")
        if not text:
            raise ToolFailed("The classifier needs some text to classify.")
        active = classifier_active(task=task)
        fitted = None if active is None else _pipeline(active)
        if active is None or fitted is None:
            raise ToolFailed(
                f"No trained classifier for '{task}' yet. An admin can train one with "
                "manage.py train_classifier."
            )
        probabilities = fitted.predict_proba([text])[0]
        ranked = sorted(zip(fitted.classes_, probabilities, strict=True), key=lambda pair: -pair[1])
        top = [[str(label), round(float(p), 4)] for label, p in ranked[:TOP_N]]
        label, probability = top[0]
        others = ", ".join(f"{name} {p:.2f}" for name, p in top[1:])
        content = (
            f"The {task} classifier (v{active.version}, held-out accuracy "
            f"{_percent(active.heldout_accuracy)} against a majority baseline of "
            f"{_percent(active.baseline_accuracy)}) labels this text {label} with probability "
            f"{probability:.2f}." + (f" Next most likely: {others}." if others else "")
        )
        return ToolResult(
            summary=f"{task}: {label} ({probability:.2f})",
            content=content,
            data={
                "task": task,
                "label": label,
                "probability": probability,
                "version": active.version,
                "top": top,
            },
        )
