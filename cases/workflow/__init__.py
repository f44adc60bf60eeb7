"""Workflow rules: triggers, conditions and ordered actions that move cases along.

- `models`: the rule tables, the event outbox, the execution log, task templates and webhooks
  (imported by `cases.models`, so they belong to the cases app).
- `fields`: what a condition can look at, and which operators each field takes.
- `compiled`: rules as the engine runs them, built once per process (`crm.snapshots`).
- `engine`: recording events in the changing transaction and running the rules after commit.
- `actions`: what a rule can do, each through the case services.
- `timed`: time-based rules and overdue tasks, in bounded batches in the worker.
- `webhooks`: signed outgoing webhooks with retries.
"""
