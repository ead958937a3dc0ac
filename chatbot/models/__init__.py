"""The one data model of the product, one file per area."""

from chatbot.models.abtests import ABAssignment, ABTest, ABVariant
from chatbot.models.accounts import ApiKey, Capability
from chatbot.models.assistant import AssistantSettings
from chatbot.models.audit import AuditEntry
from chatbot.models.cache import AnswerCacheEntry
from chatbot.models.catalogue import ModelEndpoint
from chatbot.models.chat import Citation, Conversation, Escalation, Feedback, Turn
from chatbot.models.compliance import GroupPolicy, PiiPattern
from chatbot.models.datasets import (
    Dataset,
    DatasetItem,
    Experiment,
    ExperimentResult,
    Export,
    RewardModel,
)
from chatbot.models.extraction import ExtractionRun
from chatbot.models.finetune import FineTuneJob, Promotion
from chatbot.models.judges import Judge, JudgePolicy, JudgeScore
from chatbot.models.knowledge import Chunk, Collection, Document, Posting, Source, TermStat
from chatbot.models.observability import (
    AlertFiring,
    AlertRule,
    Replay,
    RollupRun,
    TurnRollup,
    TurnRollupDay,
    UserDay,
)
from chatbot.models.prompts import PromptVersion
from chatbot.models.reports import RetrievalRollup, WeeklyReport
from chatbot.models.retention import LegalHold, RetentionPolicy, RetentionRun
from chatbot.models.review import FlagRule, Review, ReviewAssignment, ReviewItem
from chatbot.models.routing import RoutingRule
from chatbot.models.spans import Span
from chatbot.models.synthetic import SyntheticCandidate, SyntheticRun
from chatbot.models.tools import ClassifierVersion, ToolSetting

__all__ = [
    "ABAssignment",
    "ABTest",
    "ABVariant",
    "AlertFiring",
    "AlertRule",
    "AnswerCacheEntry",
    "ApiKey",
    "AssistantSettings",
    "AuditEntry",
    "Capability",
    "Chunk",
    "Citation",
    "ClassifierVersion",
    "Collection",
    "Conversation",
    "Dataset",
    "DatasetItem",
    "Document",
    "Escalation",
    "Experiment",
    "ExperimentResult",
    "Export",
    "ExtractionRun",
    "Feedback",
    "FineTuneJob",
    "FlagRule",
    "GroupPolicy",
    "Judge",
    "JudgePolicy",
    "JudgeScore",
    "LegalHold",
    "ModelEndpoint",
    "PiiPattern",
    "Posting",
    "Promotion",
    "PromptVersion",
    "Replay",
    "RetentionPolicy",
    "RetentionRun",
    "RetrievalRollup",
    "Review",
    "ReviewAssignment",
    "ReviewItem",
    "RewardModel",
    "RollupRun",
    "RoutingRule",
    "Source",
    "Span",
    "SyntheticCandidate",
    "SyntheticRun",
    "TermStat",
    "ToolSetting",
    "Turn",
    "TurnRollup",
    "TurnRollupDay",
    "UserDay",
    "WeeklyReport",
]
