"""SQLite storage: the only place that writes SQL."""

from .database import Database, Transaction
from .records import BaselineRow, OperationRow, ReplicaRecord

__all__ = ["BaselineRow", "Database", "OperationRow", "ReplicaRecord", "Transaction"]
