"""SQLite storage: the only place that writes SQL."""

from .database import Database, Transaction
from .records import BaselineRow, OperationRow, OperationsJSON, ReplicaRecord

__all__ = [
    "BaselineRow",
    "Database",
    "OperationRow",
    "OperationsJSON",
    "ReplicaRecord",
    "Transaction",
]
