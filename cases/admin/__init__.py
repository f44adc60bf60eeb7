"""The back office for cases, tasks, customers and organizations.

Every admin starts from the permission-aware selectors (`cases.selectors`): admins see all,
leads see their teams' cases (`case_list`) and change those of the teams they lead
(`case_manageable`). Every change goes through `cases.services`, so the timeline records it;
a service's typed error is shown as is, as a form error where the form can foresee it (the form
calls the same validation functions) and as an error message where it cannot (a race).
"""

from cases.admin import (  # noqa: F401 - registers the admins
    airtable,
    cases,
    customers,
    macros,
    other,
    replies,
    sla,
    tasks,
    triage,
    webhooks,
    workflows,
)
