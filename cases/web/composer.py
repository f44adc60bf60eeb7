"""The composer on the case (issue 13): reply, reply all, forward and internal notes, with
drafts saved as the agent types. Filled in by the composer work."""

urlpatterns: list = []
