"""The tasks board (issue 13): tasks by status, dragged to change it. Filled in by the board
work."""

urlpatterns: list = []
