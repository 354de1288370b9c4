from .models import Invoice, Subscription


def invoice_list_for_owner(*, owner):
    return Invoice.objects.filter(owner=owner).order_by("-created_at")


def subscription_list_for_owner(*, owner):
    return Subscription.objects.filter(owner=owner).order_by("-created_at")
