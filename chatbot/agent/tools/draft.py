"""draft: a reply, an SQL query or an HTML snippet filled in from a template an admin wrote,
always marked as a draft for a person to read, edit and copy; nothing is sent anywhere."""

from __future__ import annotations

import string
from typing import Any, ClassVar

from chatbot.agent.tools.base import Tool, ToolContext, ToolFailed, ToolResult

DRAFT_NOTE = "Draft: check and edit before you use it."
FIELD_LIMIT = 1000


def _templates(options: dict[str, Any]) -> dict[str, dict[str, str]]:
    templates = options.get("templates")
    return templates if isinstance(templates, dict) else {}


def template_fields(text: str) -> list[str]:
    """The $names a template uses, in order of first use."""
    names: list[str] = []
    for match in string.Template.pattern.finditer(text):
        name = match.group("named") or match.group("braced")
        if name and name not in names:
            names.append(name)
    return names


class Draft(Tool):
    name = "draft"
    label = "Draft"
    description = (
        "Fill in one of the team's templates (a customer reply, an SQL query, an HTML snippet) "
        "as a draft for the person to edit."
    )
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "template": {"type": "string", "minLength": 1, "maxLength": 80},
            "fields": {
                "type": "object",
                "additionalProperties": {"type": "string", "maxLength": FIELD_LIMIT},
            },
        },
        "required": ["template", "fields"],
        "additionalProperties": False,
    }
    default_options: ClassVar[dict[str, Any]] = {
        "templates": {
            "refund_reply": {
                "kind": "reply",
                "description": "Reply confirming a refund (fields: name, amount, days).",
                "text": "Hi $name,\n\nWe have refunded $amount to your card. It should reach "
                "your account within $days working days.\n\nBest regards,\nSupport",
            },
            "password_reply": {
                "kind": "reply",
                "description": "Reply with password reset steps (fields: name).",
                "text": "Hi $name,\n\nUse “Forgot password” on the sign-in page; the link "
                "we e-mail you is valid for 30 minutes.\n\nBest regards,\nSupport",
            },
        }
    }
    example = (
        "Draft a refund reply to Maria for 20 EUR.",
        {"template": "refund_reply", "fields": {"name": "Maria", "amount": "20 EUR", "days": "5"}},
    )

    def describe(self, options: dict[str, Any]) -> str:
        listed = "; ".join(
            f"{name}: {t.get('description', '')}" for name, t in _templates(options).items()
        )
        return f"{self.description} Templates: {listed or 'none yet'}."

    def options_errors(self, options: dict[str, Any]) -> list[str]:
        errors = []
        for name, template in _templates(options).items():
            if not isinstance(template, dict) or not isinstance(template.get("text"), str):
                errors.append(f"Template '{name}' needs a text.")
                continue
            try:
                string.Template(template["text"]).substitute(
                    dict.fromkeys(template_fields(template["text"]), "")
                )
            except ValueError as exc:
                errors.append(f"Template '{name}' is malformed: {exc}.")
        return errors

    def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        templates = _templates(context.options)
        name = arguments["template"]
        template = templates.get(name)
        if template is None:
            available = ", ".join(sorted(templates)) or "none"
            raise ToolFailed(f"There is no draft template '{name[:80]}'. Available: {available}.")
        text = str(template.get("text", ""))
        fields = {k: str(v)[:FIELD_LIMIT] for k, v in arguments["fields"].items()}
        missing = [f for f in template_fields(text) if f not in fields]
        # Missing fields stay visible as $name for the person to fill, never silently blank.
        draft = string.Template(text).safe_substitute(fields)
        summary = f"draft from '{name}'" + (f" (to fill: {', '.join(missing)})" if missing else "")
        return ToolResult(
            summary=summary,
            content=f"{DRAFT_NOTE}\n\n{draft}",
            data={
                "template": name,
                "kind": template.get("kind", "reply"),
                "draft": draft,
                "missing": missing,
            },
        )
