import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
# Load the URLconf (every view, every provider SDK) now: with --preload the
# master does it once and forked workers share it, instead of each worker
# spending seconds of CPU on its first request.
get_resolver().url_patterns  # noqa: B018
