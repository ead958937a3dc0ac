from django.urls import path

from chatbot.console import views

app_name = "console"
urlpatterns = [
    path("models/", views.models_list, name="models"),
    path("models/new/", views.model_edit, name="model_new"),
    path("models/<int:pk>/", views.model_edit, name="model_edit"),
    path("models/<int:pk>/default/", views.model_make_default, name="model_default"),
]
