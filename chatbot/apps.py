from django.apps import AppConfig


class ChatbotConfig(AppConfig):
    name = "chatbot"
    label = "chatbot"
    verbose_name = "Support assistant"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from chatbot.accounts.services import roles_ensure

        def _ensure_roles(sender: AppConfig, **kwargs: object) -> None:
            if sender.label == self.label:
                roles_ensure(using=str(kwargs.get("using", "default")))

        post_migrate.connect(_ensure_roles, dispatch_uid="chatbot.roles_ensure")

        from chatbot.telemetry.audit import signals_connect

        signals_connect()

        # chatbot.llm veils what it sends to endpoints that may not see personal data; what a
        # veil is lives in the compliance layer above it.
        from chatbot.compliance.redact import Placeholders
        from chatbot.llm.veil import veil_install

        veil_install(Placeholders)

        # Django's deploy checks, run with our async-capable middleware in place of its own.
        import chatbot.runtime.middleware  # noqa: F401
