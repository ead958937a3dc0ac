"""Roles are groups; what each may do is a set of the product's permissions."""

from __future__ import annotations

USE_CHAT = "chatbot.use_chat"
VIEW_KNOWLEDGE = "chatbot.view_knowledge"
MANAGE_KNOWLEDGE = "chatbot.manage_knowledge"
REVIEW_ANSWERS = "chatbot.review_answers"
VIEW_DASHBOARD = "chatbot.view_dashboard"
MANAGE_SETTINGS = "chatbot.manage_settings"

AGENT = "agent"
REVIEWER = "reviewer"
ADMIN = "admin"

ROLE_PERMISSIONS: dict[str, list[str]] = {
    AGENT: ["use_chat", "view_knowledge"],
    REVIEWER: ["use_chat", "view_knowledge", "review_answers", "view_dashboard"],
    ADMIN: [
        "use_chat",
        "view_knowledge",
        "manage_knowledge",
        "review_answers",
        "view_dashboard",
        "manage_settings",
    ],
}

# The fixed demo cast; nora has no role and must be refused everywhere.
DEMO_USERS: list[tuple[str, str | None, str]] = [
    ("alice", AGENT, "Alice Agent"),
    ("rita", REVIEWER, "Rita Reviewer"),
    ("adam", ADMIN, "Adam Admin"),
    ("nora", None, "Nora Noaccess"),
]
