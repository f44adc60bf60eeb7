"""The seam through which mail reaches the cases app (DESIGN.md: lower layers announce, higher
layers listen).

`message_ingested` is sent once for every message the CRM stores for the first time, after the
transaction that stored it has committed, whatever brought it (Graph sync now, the SMTP
listener later). Keyword arguments: `message_id` (mailsync.Message pk), `mailbox_id`, and
`folder_role` (the folder's well-known name, e.g. "inbox" or "sentitems", or "" for a user
folder). Receivers must be idempotent and quick: enqueue work, do not do it inline. A message
that merely moves or changes flags is not ingested again.
"""

from django.dispatch import Signal

message_ingested = Signal()
