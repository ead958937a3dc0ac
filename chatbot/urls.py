from django.contrib.auth import views as auth_views
from django.urls import include, path

from chatbot import views
from chatbot.api import api, openai_api
from chatbot.console import keys
from observability.views.metrics import metrics_view

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/keys/", keys.keys_page, name="api_keys"),
    path("accounts/keys/<int:pk>/revoke/", keys.key_revoke, name="api_key_revoke"),
    path("chat/", include("chatbot.chat.urls")),
    path("console/", include("chatbot.console.urls")),
    path("knowledge/", include("chatbot.knowledge.urls")),
    path("review/", include("evaluation.urls")),
    path("dashboard/", include("observability.urls", namespace="dashboard")),
    path("metrics", metrics_view, name="metrics"),
    path("api/", api.urls),
    path("v1/", openai_api.urls),
]
