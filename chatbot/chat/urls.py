from django.urls import path

from chatbot.chat import extract_views, views

app_name = "chat"
urlpatterns = [
    path("", views.index, name="index"),
    path("new/", views.conversation_new, name="new"),
    path("<int:conversation_id>/", views.conversation_detail, name="conversation"),
    path("<int:conversation_id>/delete/", views.conversation_delete, name="delete"),
    path("turns/<int:turn_id>/feedback/", views.feedback, name="feedback"),
    path("turns/<int:turn_id>/escalate/", views.escalate, name="escalate"),
    path("turns/<int:turn_id>/sources/", views.sources, name="sources"),
    path("extract/", extract_views.extract_index, name="extract"),
    path("extract/<int:run_id>/", extract_views.extract_run, name="extract_run"),
    path("extract/<int:run_id>/csv/", extract_views.extract_csv, name="extract_csv"),
]
