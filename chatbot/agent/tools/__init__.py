"""The tools the agent may call, registered in code; admins enable and configure them in the
console (`chatbot.models.ToolSetting`). Adding a tool is one module and one line in `TOOLS`."""

from __future__ import annotations

from chatbot.agent.tools.base import Tool, ToolContext, ToolFailed, ToolResult
from chatbot.agent.tools.classify import Classify
from chatbot.agent.tools.draft import Draft
from chatbot.agent.tools.extract import Extract
from chatbot.agent.tools.http_api import HttpApi
from chatbot.agent.tools.kb_search import KbSearch
from chatbot.agent.tools.sql import SqlQuery

TOOLS: dict[str, Tool] = {
    tool.name: tool for tool in (KbSearch(), Classify(), Draft(), SqlQuery(), Extract(), HttpApi())
}

__all__ = ["TOOLS", "Tool", "ToolContext", "ToolFailed", "ToolResult"]
