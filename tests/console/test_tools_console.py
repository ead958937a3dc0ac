"""The agent-tools page of the admin console: switching tools on and off, who may use them, their
timeout and settings (checked by the tool itself), and the classifiers' accuracy."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chatbot.agent.tools.access import tools_allowed, tools_ensure
from chatbot.agent.tools.classifier_training import classifier_train
from chatbot.models import ToolSetting

pytestmark = pytest.mark.django_db

ClientAs = Callable[[User], Client]


@pytest.mark.parametrize("who", ["nora", "alice", "rita"])
def test_it_refuses_everyone_but_admins(
    client_as: ClientAs, cast: dict[str, User], who: str
) -> None:
    tools_ensure()
    client = client_as(cast[who])

    assert client.get(reverse("console:tools")).status_code == 403
    assert client.get(reverse("console:tool_edit", args=["draft"])).status_code == 403
    edit = {"enabled": "on", "roles": ["agent"], "timeout_s": "5", "options": "{}"}
    assert client.post(reverse("console:tool_edit", args=["draft"]), edit).status_code == 403
    assert client.post(reverse("console:tool_toggle", args=["draft"])).status_code == 403
    assert not ToolSetting.objects.get(name="draft").enabled


def test_it_lists_every_registered_tool_with_its_state(client_as: ClientAs, adam: User) -> None:
    page = client_as(adam).get(reverse("console:tools"))

    assert page.status_code == 200
    body = page.content.decode()
    for name in ("kb_search", "sql", "classify", "draft"):
        assert f'<code class="small">{name}</code>' in body
    assert "Agent tools" in body and "Classifiers" in body


def test_it_saves_roles_timeout_and_options_and_the_agent_follows(
    client_as: ClientAs, adam: User, alice: User
) -> None:
    tools_ensure()
    options = '{"templates": {"hello": {"kind": "reply", "text": "Hi $name"}}}'
    response = client_as(adam).post(
        reverse("console:tool_edit", args=["draft"]),
        {"enabled": "on", "roles": ["agent"], "timeout_s": "4", "options": options},
    )

    assert response.status_code == 302
    saved = ToolSetting.objects.get(name="draft")
    assert saved.enabled and saved.roles == ["agent"] and saved.timeout_s == 4
    assert saved.options["templates"]["hello"]["text"] == "Hi $name"
    assert "draft" in tools_allowed(alice)

    client_as(adam).post(reverse("console:tool_toggle", args=["draft"]))
    assert "draft" not in tools_allowed(alice)


def test_it_refuses_settings_the_tool_rejects(client_as: ClientAs, adam: User) -> None:
    tools_ensure()
    before = ToolSetting.objects.get(name="sql").options

    response = client_as(adam).post(
        reverse("console:tool_edit", args=["sql"]),
        {"roles": ["agent"], "timeout_s": "5", "options": '{"row_limit": 0}'},
    )

    assert response.status_code == 400
    assert "row_limit" in response.content.decode()
    assert ToolSetting.objects.get(name="sql").options == before


def test_it_says_no_such_tool(client_as: ClientAs, adam: User) -> None:
    assert client_as(adam).get(reverse("console:tool_edit", args=["nope"])).status_code == 404


def test_it_shows_classifier_accuracy_against_the_baseline(client_as: ClientAs, adam: User) -> None:
    texts = [f"please refund my order {n}" for n in range(20)] + [
        f"the app crashes on screen {n}" for n in range(20)
    ]
    labels = ["refund_request"] * 20 + ["bug_report"] * 20
    version = classifier_train(task="intent", texts=texts, labels=labels)

    body = client_as(adam).get(reverse("console:tools")).content.decode()

    assert f"v{version.version}" in body
    assert "Majority baseline" in body and "50%" in body
