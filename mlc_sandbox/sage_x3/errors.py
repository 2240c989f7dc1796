"""X3's business and validation errors, and its answer for a record that does not exist."""

from __future__ import annotations

import zlib


class X3Error(Exception):
    """A business/validation error, rendered as $diagnoses (REST) or a GraphQL error."""

    def __init__(self, status: int, message: str, sdata_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.sdata_code = sdata_code


# Sage promises only "4xx or 5xx" for a failed call (integration-guide ws-query), so a
# missing record answers with a status chosen deterministically from its key among these,
# always with the same diagnosis; a client has to read the diagnosis, not the status.
MISSING_RECORD_STATUSES = (404, 400, 500)
MISSING_RECORD_MESSAGE = "721 : Record does not exist"


def missing_record(cls_name: str = "", key: str = "") -> X3Error:
    status = MISSING_RECORD_STATUSES[zlib.crc32(f"{cls_name}:{key}".encode())
                                     % len(MISSING_RECORD_STATUSES)]
    return X3Error(status, MISSING_RECORD_MESSAGE)
