from chatbot.api.main import api
from chatbot.api.openai_compat import openai_api

__all__ = ["api", "openai_api"]
