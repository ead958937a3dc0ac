from django.urls import path

from chatbot.knowledge import views

app_name = "knowledge"
urlpatterns = [
    path("", views.index, name="index"),
    path("collections/<int:pk>/", views.collection, name="collection"),
    path("sources/<int:pk>/", views.source, name="source"),
    path(
        "sources/<int:pk>/<slug:action>/",
        views.source_action,
        name="source_action",
    ),
    path("documents/<int:pk>/", views.document, name="document"),
]
