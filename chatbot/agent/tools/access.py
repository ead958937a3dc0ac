"""Which tools a person may have the agent call, and the admin's settings rows for them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User

from chatbot.accounts import roles
from chatbot.agent.tools import TOOLS, Tool
from chatbot.models import ToolSetting

# Enabled for the demo (`bootstrap --demo`): alice can ask for numbers and classify tickets out
# of the box. kb_search is always on: it is the search every turn already does.
DEMO_ENABLED = ("kb_search", "sql", "classify", "extract")


@dataclass(frozen=True)
class Allowed:
    """A tool this person may use in this turn, with its settings as they were read."""

    tool: Tool
    timeout_s: float
    options: dict[str, Any]


def tools_ensure(*, enable: tuple[str, ...] = ("kb_search",)) -> list[ToolSetting]:
    """A settings row per registered tool, made once with the tool's defaults (enabled when
    named in `enable`); an admin's later edits are kept."""
    rows = []
    for name, tool in TOOLS.items():
        row, _ = ToolSetting.objects.get_or_create(
            name=name,
            defaults={
                "enabled": name in enable,
                "roles": list(tool.default_roles),
                "timeout_s": tool.default_timeout_s,
                "options": dict(tool.default_options),
            },
        )
        rows.append(row)
    return rows


def _role_names(user: User) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


def tools_allowed(user: User) -> dict[str, Allowed]:
    """The enabled tools whose roles include one of the person's. Two queries; nothing for a
    person without the chat permission or for a tool no longer registered in code."""
    if not (user.is_active and user.has_perm(roles.USE_CHAT)):
        return {}
    mine = _role_names(user)
    allowed: dict[str, Allowed] = {}
    for row in ToolSetting.objects.filter(enabled=True):
        tool = TOOLS.get(row.name)
        if tool is None or not mine.intersection(row.roles or []):
            continue
        allowed[row.name] = Allowed(tool=tool, timeout_s=row.timeout_s, options=dict(row.options))
    return allowed


def tools_beyond_search() -> bool:
    """Whether any tool besides the knowledge-base search is on for anyone: without one, a turn
    is the plain "search, then answer" pipeline and nobody's roles need reading."""
    return ToolSetting.objects.filter(enabled=True).exclude(name="kb_search").exists()


def tool_refusal(name: str, allowed: dict[str, Allowed]) -> str:
    """Why the agent may not call `name` for this person, in words; "" when it may."""
    if name in allowed:
        return ""
    if name not in TOOLS:
        return f"There is no tool called '{name[:60]}'."
    return f"The tool '{name}' is not available to you, so it was not called."
