"""Background jobs for the knowledge base. Tasks take ids and are safe to run twice."""

from celery import shared_task

from chatbot.jobs import ALREADY_RUNNING, job_exclusive
from chatbot.knowledge.ingest import source_ingest


@shared_task(name="knowledge.source_ingest")
def source_ingest_task(source_id: int) -> str:
    """Ingest one source; a redelivered task (worker killed) resumes where the last one stopped."""
    with job_exclusive("source", source_id) as mine:
        if not mine:
            return ALREADY_RUNNING
        return source_ingest(source_id=source_id).status
