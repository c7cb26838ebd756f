"""Experiments: the run ledger (SQLite), what runs and evaluations record into it, and promotion of
checkpoints by fixed rules.
"""

from sconet.experiments.ledger import SCHEMA_VERSION, STATUSES, Ledger, LedgerError, open_ledger
from sconet.experiments.promote import (
    CHANGELOG,
    DEFAULT_ARTIFACT_DIR,
    INDEX,
    PromotionError,
    PromotionResult,
    Rule,
    current_promoted,
    promote,
)
from sconet.experiments.recording import RunRecorder, open_run, record_evaluation
from sconet.experiments.records import (
    DEFAULT_LEDGER,
    LEDGER_ENV,
    CheckpointRecord,
    EvaluationRecord,
    RunSummary,
    file_sha256,
    resolve_ledger_path,
    sconet_commit,
    split_key,
)

__all__ = [
    "DEFAULT_LEDGER",
    "LEDGER_ENV",
    "SCHEMA_VERSION",
    "STATUSES",
    "CheckpointRecord",
    "EvaluationRecord",
    "Ledger",
    "LedgerError",
    "RunSummary",
    "file_sha256",
    "open_ledger",
    "resolve_ledger_path",
    "sconet_commit",
    "split_key",
    "CHANGELOG",
    "DEFAULT_ARTIFACT_DIR",
    "INDEX",
    "PromotionError",
    "PromotionResult",
    "Rule",
    "current_promoted",
    "promote",
    "RunRecorder",
    "open_run",
    "record_evaluation",
]
