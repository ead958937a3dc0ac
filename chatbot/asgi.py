"""ASGI entry point: HTTP through Django, websockets through Channels consumers."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")

import django

django.setup()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

from chatbot.runtime.embedded import ensure_services  # noqa: E402

ensure_services()

django_asgi_app = get_asgi_application()

from chatbot.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
