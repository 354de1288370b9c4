from django.urls import path

from . import views

app_name = "mail"

urlpatterns = [
    path("<int:connection>/messages/", views.MessageListView.as_view(), name="messages"),
    path("<int:connection>/messages/send/", views.SendView.as_view(), name="send"),
    path("<int:connection>/messages/<str:message_id>/", views.MessageDetailView.as_view(), name="message"),
    path("<int:connection>/messages/<str:message_id>/modify/", views.MessageModifyView.as_view(), name="modify"),
    path(
        "<int:connection>/messages/<str:message_id>/attachments/<str:attachment_id>/",
        views.AttachmentView.as_view(),
        name="attachment",
    ),
    path("<int:connection>/threads/<str:thread_id>/", views.ThreadView.as_view(), name="thread"),
    path("<int:connection>/drafts/", views.DraftListView.as_view(), name="drafts"),
    path("<int:connection>/drafts/<str:draft_id>/", views.DraftDetailView.as_view(), name="draft"),
    path("<int:connection>/drafts/<str:draft_id>/send/", views.DraftSendView.as_view(), name="draft-send"),
    path("<int:connection>/labels/", views.LabelListView.as_view(), name="labels"),
    path("<int:connection>/labels/<str:label_id>/", views.LabelDetailView.as_view(), name="label"),
    path("<int:connection>/sync/", views.SyncView.as_view(), name="sync"),
]
