from django.urls import path

from evaluation.finetune import views

# Included under /review/finetune/ in the "review" namespace (evaluation/urls.py).
urlpatterns = [
    path("", views.jobs, name="finetune_jobs"),
    path("new/", views.job_new, name="finetune_new"),
    path("<int:pk>/", views.job, name="finetune_job"),
    path("<int:pk>/cancel/", views.job_cancel, name="finetune_cancel"),
    path("<int:pk>/promotion/", views.promotion_start, name="finetune_promotion"),
    path(
        "promotions/<int:pk>/<slug:action>/",
        views.promotion_action,
        name="finetune_promotion_action",
    ),
]
