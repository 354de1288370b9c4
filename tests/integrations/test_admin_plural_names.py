"""Every model's plural, as admin's lists, breadcrumbs and "Select ... to view" show it, is English: Django adds an
"s" to the singular unless the model says otherwise ("alert deliverys", "mailboxs", "price watchs")."""

import re

from django.apps import apps

# Singulars Django's "add an s" gets wrong: a consonant then y (delivery), or s / sh / ch / x / z (box, watch).
WRONG = re.compile(r"([^aeiou]ys|(s|sh|ch|x|z)s)$")


def test_every_models_plural_reads_as_english():
    wrong = {
        m._meta.label: str(m._meta.verbose_name_plural)
        for m in apps.get_models()
        if WRONG.search(str(m._meta.verbose_name_plural))
    }
    assert wrong == {}
