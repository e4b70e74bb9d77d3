from django.urls import path

from sandbox.recorder.views import batch, record, records

urlpatterns = [
    path("batch", batch, name="recorder-batch"),
    path("records/", records, name="recorder-records"),
    path("records/<str:entity>/<str:key>", record, name="recorder-record"),
]
