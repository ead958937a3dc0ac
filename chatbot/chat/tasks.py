"""Background jobs for chat. Tasks take ids or nothing, and are safe to run twice."""

from celery import shared_task

from chatbot.chat import services


@shared_task(name="chat.turns_expire_stale")
def turns_expire_stale() -> int:
    """Close turns a dead process left pending or streaming (runs every few minutes)."""
    return services.turns_expire_stale()
