"""The root page: where a person who opens the hub's address can go next."""

from django.contrib import admin
from django.shortcuts import render
from django.views.decorators.http import require_safe


@require_safe
def landing(request):
    # Admin's own look and header (and its "log out" links for a signed-in user), no page of its own to style.
    context = {**admin.site.each_context(request), "title": "Integration Hub", "is_nav_sidebar_enabled": False}
    return render(request, "landing.html", context)
