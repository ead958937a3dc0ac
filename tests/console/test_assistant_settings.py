"""Admins set how answers are grounded; the next turn uses it."""

from __future__ import annotations

import pytest
from django.urls import reverse

from chatbot.agent.grounding import assistant_settings
from chatbot.models import AssistantSettings
from chatbot.models.assistant import DEFAULT_MIN_ANSWERABLE
from chatbot.retrieval.answerable import THRESHOLDS, answerable_model, trade_off_table

pytestmark = pytest.mark.django_db

URL = "/console/assistant/"
VALID = {
    "grounding": "required",
    "retrieval_k": "4",
    "min_similarity": "0.42",
    "min_coverage": "0.6",
    "min_answerable": "0.7",
    "max_steps": "4",
    "no_answer_message": "Not in our docs. Press “Needs a human”.",
    "cache_enabled": "on",
    "cache_similarity": "0.9",
}


def test_it_shows_the_defaults_before_anything_is_saved(client_as, adam, settings) -> None:
    settings.ASSISTANT_GROUNDING_DEFAULT = "required"
    page = client_as(adam).get(URL).content.decode()
    assert "Answers &amp; grounding" in page
    assert 'value="required" ' in page and "checked" in page
    assert not AssistantSettings.objects.exists()


def test_an_admin_saves_the_settings_the_next_turn_reads(client_as, adam) -> None:
    response = client_as(adam).post(URL, VALID)
    assert response.status_code == 302 and response.url == reverse("console:assistant")
    config = assistant_settings()
    assert (config.grounding, config.retrieval_k, config.min_similarity) == ("required", 4, 0.42)
    assert config.min_coverage == 0.6 and config.min_answerable == 0.7
    assert config.max_steps == 4
    assert config.no_answer_message.startswith("Not in our docs.")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("min_similarity", "1.5", "less than or equal to 1"),
        ("min_coverage", "-0.1", "greater than or equal to 0"),
        ("min_answerable", "2", "less than or equal to 1"),
        ("retrieval_k", "0", "greater than or equal to 1"),
        ("grounding", "sometimes", "Select a valid choice"),
        ("no_answer_message", "   ", "This field is required"),
        ("max_steps", "9", "Allow between 1 and 8 steps per turn."),
        ("cache_similarity", "1.2", "less than or equal to 1"),
        ("cache_similarity", "", "This field is required"),
    ],
)
def test_it_explains_bad_settings(client_as, adam, field, value, message) -> None:
    response = client_as(adam).post(URL, {**VALID, field: value})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not AssistantSettings.objects.exists()


def test_only_admins_may_change_it(client_as, alice, rita, nora) -> None:
    for user in (alice, rita, nora):
        assert client_as(user).get(URL).status_code == 403
        assert client_as(user).post(URL, VALID).status_code == 403
    assert not AssistantSettings.objects.exists()


def test_it_shows_the_measured_trade_off_beside_the_answerability_threshold(
    client_as, adam
) -> None:
    classifier = answerable_model()
    assert classifier is not None
    tuned = classifier.about["threshold"]
    page = client_as(adam).get(URL).content.decode()

    assert "Answerability threshold" in page and "Measured trade-off" in page
    assert f"chosen on the tuning part: {tuned:.2f}" in page
    rows = trade_off_table(classifier)
    assert len(rows) == len(THRESHOLDS) and page.count('<th scope="row">') == len(rows)
    middle = next(r for r in rows if r["threshold"] == tuned)
    for name, parts in middle["sets"].items():
        assert f">{name}</th>" in page, "one group of columns per evaluation set"
        assert f"<td>{parts['confirm']['refused']:.2f}</td>" in page, "confirming figures shown"
    assert 'aria-current="true"' in page, "the saved threshold's row is marked"


def test_the_default_threshold_is_the_one_chosen_on_the_tuning_part() -> None:
    classifier = answerable_model()
    assert classifier is not None
    assert classifier.about["threshold"] == DEFAULT_MIN_ANSWERABLE
    assert AssistantSettings().min_answerable == DEFAULT_MIN_ANSWERABLE


def test_it_switches_the_answer_cache_and_sets_its_threshold(client_as, adam) -> None:
    page = client_as(adam).get(URL).content.decode()
    assert "Answer cache" in page and "Cache: similar questions from" in page
    assert 'name="cache_enabled"' in page and 'value="0.95"' in page, "on, at 0.95, by default"

    assert client_as(adam).post(URL, VALID).status_code == 302
    config = assistant_settings()
    assert config.cache_enabled is True and config.cache_similarity == 0.9

    unchecked = {k: v for k, v in VALID.items() if k != "cache_enabled"}
    assert client_as(adam).post(URL, {**unchecked, "cache_similarity": "0"}).status_code == 302
    config = assistant_settings()
    assert config.cache_enabled is False and config.cache_similarity == 0.0
