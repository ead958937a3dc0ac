"""The review area (/review/): the queue and item pages, agreement, the escalation inbox,
datasets and experiments, and training exports. Each part keeps its own url module."""

from django.urls import include, path

app_name = "review"
urlpatterns = [
    path("", include("evaluation.review.urls")),
    path("datasets/", include("evaluation.datasets.urls")),
    path("escalations/", include("evaluation.escalations.urls")),
    path("exports/", include("evaluation.exports.urls")),
    path("finetune/", include("evaluation.finetune.urls")),
    path("synthetic/", include("evaluation.synthetic.urls")),
]
