from ninja import NinjaAPI

openai_api = NinjaAPI(
    title="OpenAI-compatible API", version="1", urls_namespace="openai", docs_url=None
)
