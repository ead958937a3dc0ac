from django.urls import path

from evaluation.review import views

urlpatterns = [
    path("", views.queue, name="queue"),
    path("next/", views.take_next, name="next"),
    path("items/<int:pk>/", views.item, name="item"),
    path("agreement/", views.agreement, name="agreement"),
]
