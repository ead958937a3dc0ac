from django.urls import path

from evaluation.datasets import views

# Included under /review/datasets/ in the "review" namespace.
urlpatterns = [
    path("", views.datasets, name="datasets"),
    path("<int:pk>/", views.dataset, name="dataset"),
    path("<int:pk>/regression/", views.dataset_regression, name="dataset_regression"),
    path("import/", views.dataset_import, name="dataset_import"),
    path("items/<int:item_id>/remove/", views.dataset_item_remove, name="dataset_item_remove"),
    path("from-review/<int:review_id>/", views.dataset_add_review, name="dataset_add_review"),
    path(
        "from-escalation/<int:escalation_id>/",
        views.dataset_add_escalation,
        name="dataset_add_escalation",
    ),
    path("experiments/", views.experiments, name="experiments"),
    path("experiments/new/", views.experiment_new, name="experiment_new"),
    path("experiments/<int:pk>/", views.experiment, name="experiment"),
    path("experiments/compare/", views.experiment_compare, name="experiment_compare"),
]
