"""A local Airtable Web API for tests, demo and benchmarks (plain HTTP on loopback).

It enforces what makes a real export hard: 10 records per write, 5 requests per second per
base (429, then the base is locked out for `lockout_seconds`), offset pagination, upserts by
`performUpsert.fieldsToMergeOn`, unknown fields refused with 422, Airtable's 401 and 403
answers for a bad token or a base or table the token cannot reach. Production code never
imports this package.

- `tables`: bases, tables and records, and the record endpoints' semantics and errors.
- `server`: HTTP, tokens, the rate limit and lockout, faults and the counters tests read.
"""
