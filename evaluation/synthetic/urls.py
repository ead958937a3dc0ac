from django.urls import path

from evaluation.synthetic import views

# Included under /review/synthetic/ in the "review" namespace.
urlpatterns = [
    path("", views.queue, name="synthetic_queue"),
    path("next/", views.take_next, name="synthetic_next"),
    path("new/", views.generate_new, name="synthetic_new"),
    path("runs/<int:pk>/", views.run_detail, name="synthetic_run"),
    path("runs/<int:pk>/resume/", views.run_resume, name="synthetic_run_resume"),
    path("<int:pk>/", views.candidate_detail, name="synthetic_candidate"),
]
