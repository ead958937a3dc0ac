from django.urls import path

from evaluation.escalations import views

# Included under /review/escalations/ in the "review" namespace.
urlpatterns = [
    path("", views.inbox, name="escalations"),
    path("<int:pk>/", views.escalation, name="escalation"),
]
