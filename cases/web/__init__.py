"""The agent web UI: server-rendered pages with htmx partials (issue: agent web UI, part 1).

Every page reads through `cases.selectors` and writes through `cases.services`, exactly as the
API does, so an agent can do and see in the browser what the API lets them do and see.
Modules: `queues` (case lists, saved views, bulk changes, CSV export), `workspace` (one case),
`directory` (customers, organizations, tasks), `profile` (the agent's own settings).
"""
