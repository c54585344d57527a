"""File sync: storage backends, the upload/download endpoints and the deletion sweep.

Only the storage side is imported here; the service and views depend on ``storage`` (the
database), which itself imports ``records`` from this package.
"""

from .backend import FileStorage, ReadableStream
from .local import LocalFileStorage
from .records import FileInfo

__all__ = ["FileInfo", "FileStorage", "LocalFileStorage", "ReadableStream"]
