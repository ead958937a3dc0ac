from __future__ import annotations

import pytest
from django.urls import reverse

from chatbot.models import ModelEndpoint

pytestmark = pytest.mark.django_db

VALID = {
    "name": "team-vllm",
    "provider": "openai",
    "base_url": "http://vllm.internal:8000/v1",
    "model_id": "qwen2.5-7b",
    "api_key_name": "",
    "style": "chat",
    "prompt_template": "",
    "price_input_per_mtok": "0.10",
    "price_output_per_mtok": "0.30",
    "context_window": "32768",
    "max_output_tokens": "512",
    "temperature": "0.2",
    "region": "eu-west",
    "tool_calling": "native",
    "enabled": "on",
    "options": "{}",
}


@pytest.mark.parametrize("who", ["nora", "alice", "rita"])
@pytest.mark.parametrize("url", ["console:models", "console:model_new"])
def test_it_refuses_everyone_but_admins(client_as, cast, who, url) -> None:
    response = client_as(cast[who]).get(reverse(url))
    assert response.status_code == 403


def test_it_refuses_changes_from_non_admins(client_as, cast, fake_endpoint) -> None:
    endpoint = fake_endpoint(default=False)
    for who in ("nora", "alice"):
        client = client_as(cast[who])
        assert client.post(reverse("console:model_new"), VALID).status_code == 403
        assert (
            client.post(reverse("console:model_edit", args=[endpoint.pk]), VALID).status_code == 403
        )
        assert client.post(reverse("console:model_default", args=[endpoint.pk])).status_code == 403
    assert not ModelEndpoint.objects.filter(name="team-vllm").exists()
    endpoint.refresh_from_db()
    assert not endpoint.is_default


def test_it_sends_anonymous_visitors_to_login(client) -> None:
    response = client.get(reverse("console:models"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_it_lists_the_catalogue_for_admins(client_as, adam, fake_endpoint) -> None:
    fake_endpoint(name="fake-one")
    response = client_as(adam).get(reverse("console:models"))
    assert response.status_code == 200
    assert b"fake-one" in response.content and b"Default" in response.content


def test_it_adds_and_edits_a_model(client_as, adam) -> None:
    client = client_as(adam)
    response = client.post(reverse("console:model_new"), VALID)
    assert response.status_code == 302
    endpoint = ModelEndpoint.objects.get(name="team-vllm")
    assert endpoint.region == "eu-west" and str(endpoint.price_output_per_mtok) == "0.3000"
    assert endpoint.tool_calling == "native"

    response = client.post(
        reverse("console:model_edit", args=[endpoint.pk]), {**VALID, "region": "us-east"}
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.region == "us-east"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"style": "completion", "prompt_template": "{context} {question}"}, "Unknown field"),
        ({"style": "completion", "prompt_template": "no question here"}, "must contain {question}"),
        ({"temperature": "5"}, "between 0 and 2"),
        (
            {"style": "completion", "prompt_template": "{question}", "tool_calling": "native"},
            "Native tool calling needs a chat-style model",
        ),
        ({"provider": "anthropic", "api_key_name": ""}, "needs the name"),
        ({"base_url": ""}, "Give the server"),
        ({"options": "[1, 2]"}, "JSON object"),
        ({"options": "{not json"}, "Enter a valid JSON"),
    ],
)
def test_it_explains_bad_input(client_as, adam, change, message) -> None:
    response = client_as(adam).post(reverse("console:model_new"), {**VALID, **change})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ModelEndpoint.objects.filter(name="team-vllm").exists()


def test_it_switches_the_default_model(client_as, adam, fake_endpoint) -> None:
    first = fake_endpoint(name="first")
    second = fake_endpoint(name="second", default=False)
    response = client_as(adam).post(reverse("console:model_default", args=[second.pk]))
    assert response.status_code == 302
    first.refresh_from_db()
    second.refresh_from_db()
    assert second.is_default and not first.is_default


def test_it_refuses_a_disabled_model_as_default(client_as, adam, fake_endpoint) -> None:
    endpoint = fake_endpoint(name="off", default=False, enabled=False)
    client_as(adam).post(reverse("console:model_default", args=[endpoint.pk]))
    endpoint.refresh_from_db()
    assert not endpoint.is_default


def test_it_answers_404_for_an_unknown_model(client_as, adam) -> None:
    assert client_as(adam).get(reverse("console:model_edit", args=[999999])).status_code == 404
