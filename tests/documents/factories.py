import factory

from documents.models import Document, DocumentVersion
from tests.factories import UserFactory


class DocumentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Document

    owner = factory.SubFactory(UserFactory)


class DocumentVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DocumentVersion

    document = factory.SubFactory(DocumentFactory)
    number = factory.Sequence(lambda n: n + 1)
    filename = "notes.txt"
    content_type = "text/plain"
    size = 12
    sha256 = "0" * 64
    backend = DocumentVersion.Backend.LOCAL
    storage_key = factory.Sequence(lambda n: f"documents/aa/{n:032x}")
