from django.urls import path

from evaluation.exports import views

# Included under /review/exports/ in the "review" namespace (evaluation/urls.py).
urlpatterns = [
    path("", views.exports, name="exports"),
    path("new/", views.export_new, name="export_new"),
    path("<int:pk>/", views.export, name="export"),
    path("<int:pk>/download/", views.export_download, name="export_download"),
    path("reward/", views.reward, name="reward"),
    path("reward/train/", views.reward_train, name="reward_train"),
    path("reward/<int:pk>/activate/", views.reward_activate, name="reward_activate"),
]
