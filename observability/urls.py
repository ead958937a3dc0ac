"""The dashboard area (/dashboard/): overview, turns and traces, replays and alerts."""

from django.urls import path

from observability.views import alerts, dashboard, replay, trace, weekly

app_name = "dashboard"
urlpatterns = [
    path("", dashboard.index, name="index"),
    path("export.csv", dashboard.export, name="export"),
    path("turns/", trace.turns, name="turns"),
    path("turns/<int:turn_id>/", trace.turn, name="turn"),
    path("turns/<int:turn_id>/replay/", replay.start, name="replay_start"),
    path("replays/", replay.index, name="replays"),
    path("replays/<int:pk>/", replay.detail, name="replay"),
    path("alerts/", alerts.index, name="alerts"),
    path("alerts/<int:pk>/", alerts.edit, name="alert_edit"),
    path("alerts/<int:pk>/<slug:action>/", alerts.action, name="alert_action"),
    path("weekly/", weekly.index, name="weekly"),
    path("weekly/run/", weekly.run_now, name="weekly_run"),
    path("weekly/<str:week_start>/", weekly.detail, name="weekly_report"),
    path("weekly/<str:week_start>/<slug:action>/", weekly.action, name="weekly_action"),
]
