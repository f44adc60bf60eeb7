"""A local Microsoft identity platform and Graph simulator for tests, demo and benchmarks.

It speaks HTTPS with its own test CA, so MSAL and our Graph client run unmodified against it
(only the base URLs and the extra trusted CA differ, as for a national cloud). Production code
never imports this package.

- `server`: HTTPS, the identity endpoints, fault injection, the per-mailbox concurrency limit.
- `routes`: the mail routes below `/v1.0` (folders, delta, single messages, attachments).
- `batch`: `POST /v1.0/$batch` through the same routes.
- `mail`: mailboxes with Graph's delta semantics, regular and immutable ids.
- `faults`: scripted and seeded random faults.
- `seed`: realistic mailboxes, bulk mailboxes for benchmarks, scripted mutations.
"""
