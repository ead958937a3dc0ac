"""Which model an LLM judge would run on, and whether that model can grade.

An LLM judge runs on its own model when an admin picked one, else on the catalogue default. The
catalogue marks the models able to grade (`ModelEndpoint.capable_judge`); the bundled local model
(a 270M base model) is not one of them. On a model without the mark, or with no model at all, the
judge is in the "needs a capable model" state: it does not run, and gives no score.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from chatbot.llm.router import catalogue_enabled, endpoint_default
from chatbot.llm.types import EndpointConfig, NoModelAvailable
from chatbot.models import Judge, ModelEndpoint

NEEDS_CAPABLE_MODEL = "needs a capable model"


@dataclass(frozen=True)
class JudgeModel:
    """The model a judge would run on now. `needs` says why it cannot grade ("" when it can);
    `error` is a model that is missing for the moment (disabled, none enabled): a failure the
    judge task retries, not a state of the judge."""

    endpoint: EndpointConfig | None
    needs: str = ""
    error: str = ""

    @property
    def ready(self) -> bool:
        return self.endpoint is not None and not self.needs and not self.error

    @property
    def name(self) -> str:
        return self.endpoint.name if self.endpoint is not None else ""


def _needs(text: str) -> str:
    return f"{NEEDS_CAPABLE_MODEL}: {text}"


def _default(enabled: list[EndpointConfig], default_id: int | None) -> EndpointConfig | None:
    try:
        return endpoint_default(enabled, default_id).endpoint
    except NoModelAvailable:
        return None


def _resolve(judge: Judge, default: EndpointConfig | None, capable: set[int]) -> JudgeModel:
    chosen: ModelEndpoint | None = judge.endpoint
    if chosen is not None:
        if not chosen.enabled:
            return JudgeModel(
                None,
                error=f"The judge model '{chosen.name}' is disabled. Enable it or pick another.",
            )
        config = EndpointConfig.from_model(chosen)
        if not chosen.capable_judge:
            return JudgeModel(
                config,
                needs=_needs(
                    f"its model '{chosen.name}' is not marked capable of grading answers in "
                    "Console → Models. Pick a capable model for this judge."
                ),
            )
        return JudgeModel(config)
    if default is None:  # nothing enabled at all: an outage, not a choice of model
        return JudgeModel(
            None, error="No model is available right now. An admin needs to enable one."
        )
    if default.id not in capable:
        return JudgeModel(
            default,
            needs=_needs(
                f"no model is picked for this judge, and the default model '{default.name}' is "
                "not marked capable of grading answers (the small bundled local model cannot "
                "grade). Pick a capable model for this judge."
            ),
        )
    return JudgeModel(default)


def judges_models(judges: Iterable[Judge]) -> dict[int, JudgeModel]:
    """For each LLM judge (by pk), the model it would run on now: two queries for any number of
    judges (`judge.endpoint` should be selected with them)."""
    wanted = [j for j in judges if j.is_llm]
    if not wanted:
        return {}
    enabled, default_id = catalogue_enabled()
    default = _default(enabled, default_id)
    capable = set(
        ModelEndpoint.objects.filter(enabled=True, capable_judge=True).values_list("pk", flat=True)
    )
    return {j.pk: _resolve(j, default, capable) for j in wanted}


def judge_model(judge: Judge) -> JudgeModel | None:
    """The model `judge` would run on now; None for a judge that asks no model."""
    return judges_models([judge]).get(judge.pk)
