from ninja import NinjaAPI

api = NinjaAPI(title="Support assistant API", version="1", urls_namespace="api")
