"""Background jobs for the knowledge base. Tasks take ids and are safe to run twice."""

from celery import shared_task

from chatbot.agent.cache import answer_cache_retire_stale
from chatbot.jobs import ALREADY_RUNNING, job_exclusive
from chatbot.knowledge.ingest import source_ingest, versions_prune


@shared_task(name="knowledge.source_ingest")
def source_ingest_task(source_id: int) -> str:
    """Ingest one source; a redelivered task (worker killed) resumes where the last one stopped."""
    with job_exclusive("source", source_id) as mine:
        if not mine:
            return ALREADY_RUNNING
        return source_ingest(source_id=source_id).status


@shared_task(name="knowledge.answer_cache_retire")
def answer_cache_retire_task(collection_id: int | None = None) -> int:
    """Retire the cached answers a collection's change made unreachable (every collection's
    when none is given: the hourly sweep). Returns how many were retired."""
    return answer_cache_retire_stale(collection_id=collection_id)


@shared_task(name="knowledge.versions_prune")
def versions_prune_task() -> int:
    """Delete the past versions' chunks older than KNOWLEDGE_VERSIONS_KEEP_DAYS that no answer
    cites, in every source (a source's own run prunes its own too). Returns how many."""
    return versions_prune()
