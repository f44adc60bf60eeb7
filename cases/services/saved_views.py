"""An agent's own saved queues (the queue page's "Save view")."""

from __future__ import annotations

from urllib.parse import urlencode

from django.db import transaction

from cases.errors import CaseError
from cases.models import SavedView
from crm.models import User

MAX_SAVED_VIEWS = 50
# What a view remembers: the filters and the sort, never the page it was on.
NOT_SAVED = {"cursor", "saved", "csrfmiddlewaretoken", "name"}


@transaction.atomic
def saved_view_save(*, owner: User, name: str, params: dict[str, list[str]]) -> SavedView:
    """Save the queue's filters under `name`, replacing the agent's view of that name."""
    name = " ".join(name.split())
    if not name:
        raise CaseError("Give the view a name.", field="name")
    if len(name) > SavedView._meta.get_field("name").max_length:
        raise CaseError("That name is too long (80 characters at most).", field="name")
    kept = [
        (key, value)
        for key, values in params.items()
        if key not in NOT_SAVED
        for value in values
        if value
    ]
    query = urlencode(sorted(kept))
    if len(query) > SavedView._meta.get_field("query").max_length:
        raise CaseError("Those filters are too long to save.", field="query")
    view = SavedView.objects.select_for_update().filter(owner=owner, name=name).first()
    if view is None:
        if SavedView.objects.filter(owner=owner).count() >= MAX_SAVED_VIEWS:
            raise CaseError(f"You can keep at most {MAX_SAVED_VIEWS} views.", field="name")
        return SavedView.objects.create(owner=owner, name=name, query=query)
    view.query = query
    view.save(update_fields=["query"])
    return view


def saved_view_delete(*, owner: User, view_id: int) -> bool:
    """Delete one of the agent's views; False when it was not theirs or is gone."""
    deleted, _ = SavedView.objects.filter(owner=owner, pk=view_id).delete()
    return deleted > 0
