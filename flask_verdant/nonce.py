"""The opaque ack token of ``sync-resp``: base64 of the JSON server order.

See docs/protocol.md, "Messages".

Clients echo it unchanged, so it is decoded while validating the batch: a nonce this server
could not have issued is refused before any message of the request is applied.
"""

from __future__ import annotations

import base64
import binascii
import json

from .errors import bad_request


def encode_nonce(server_order: int) -> str:
    return base64.b64encode(json.dumps(server_order).encode()).decode()


def decode_nonce(nonce: str) -> int:
    try:
        value = json.loads(base64.b64decode(nonce, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise bad_request("The ack nonce is not one this server issued") from exc
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad_request("The ack nonce is not one this server issued")
    return value
