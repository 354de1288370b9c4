"""Encrypted model fields: Fernet ciphertext in the database, plaintext in Python.

`MultiFernet` over settings.FIELD_ENCRYPTION_KEYS: the first key encrypts,
every key decrypts. To rotate, put a new key first, deploy, run
`manage.py rotate_encryption_keys`, then drop the old key.

Fernet tokens are randomised (a fresh IV per encryption), so the same secret
never produces the same ciphertext twice: the database cannot compare values,
and lookups on an encrypted field (`filter(access_token=...)`) raise
`FieldError`. Only `isnull` is allowed. Filter on another column instead.
"""

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.db import models


class DecryptionError(Exception):
    """A stored value that no key in FIELD_ENCRYPTION_KEYS decrypts."""


@functools.lru_cache(maxsize=8)
def _multifernet(keys):
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.strip().encode()))
        except (ValueError, TypeError):
            # Never echo the key itself: it is a secret even when malformed.
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS: key #{position} is not a valid Fernet key (32 url-safe base64-encoded "
                "bytes). Generate one with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`."
            ) from None
    if not fernets:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is empty; it needs at least one Fernet key.")
    return MultiFernet(fernets)


def get_fernet():
    """The MultiFernet for the current settings (cached per key list, so settings overrides work in tests)."""
    keys = settings.FIELD_ENCRYPTION_KEYS
    if isinstance(keys, str):
        keys = keys.split(",")
    return _multifernet(tuple(k for k in keys if k.strip()))


def validate_encryption_keys():
    """Raise ImproperlyConfigured naming FIELD_ENCRYPTION_KEYS when a key is missing or malformed."""
    get_fernet()


def encrypt_str(value):
    return get_fernet().encrypt(value.encode()).decode()


def decrypt_str(token):
    try:
        return get_fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "A stored value cannot be decrypted with any key in FIELD_ENCRYPTION_KEYS; was a key removed "
            "before `manage.py rotate_encryption_keys` re-encrypted the data?"
        ) from None


class EncryptedTextField(models.TextField):
    """Text stored as Fernet ciphertext. The empty string and None are stored as they are.

    Every write path (save, update, bulk_update) goes through get_db_prep_value,
    so plaintext never reaches the database.
    """

    description = "Text encrypted with Fernet (FIELD_ENCRYPTION_KEYS)"

    def get_db_prep_value(self, value, connection, prepared=False):
        value = super().get_db_prep_value(value, connection, prepared)
        if value is None or value == "":
            return value
        return encrypt_str(str(value))

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return decrypt_str(value)

    def get_lookup(self, lookup_name):
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        raise FieldError(
            f"{self.__class__.__name__} {self.model.__name__}.{self.name} does not support the "
            f"'{lookup_name}' lookup: its ciphertext is randomised, so the database cannot compare values. "
            "Filter on another field."
        )

    def get_transform(self, lookup_name):
        raise FieldError(f"{self.__class__.__name__} {self.model.__name__}.{self.name} does not support transforms.")


def encrypted_fields():
    """(model, [field names]) for every installed model with EncryptedTextField columns."""
    from django.apps import apps

    found = []
    for model in apps.get_models():
        names = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if names:
            found.append((model, names))
    return found
