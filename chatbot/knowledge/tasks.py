"""Background jobs for the knowledge base. Tasks take ids and are safe to run twice."""

from celery import shared_task

from chatbot.knowledge.ingest import source_ingest


@shared_task(name="knowledge.source_ingest")
def source_ingest_task(source_id: int) -> str:
    """Ingest one source; a redelivered task (worker killed) resumes where the last one stopped."""
    return source_ingest(source_id=source_id).status
