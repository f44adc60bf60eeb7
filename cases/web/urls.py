"""URLs of the agent web UI (namespace `web`); each module lists its own patterns."""

from cases.web import (
    board,
    composer,
    dashboard,
    directory,
    live,
    profile,
    queues,
    reports,
    workspace,
)

app_name = "web"

urlpatterns = [
    *queues.urlpatterns,
    *workspace.urlpatterns,
    *directory.urlpatterns,
    *profile.urlpatterns,
    *composer.urlpatterns,
    *board.urlpatterns,
    *live.urlpatterns,
    *dashboard.urlpatterns,
    *reports.urlpatterns,
]
