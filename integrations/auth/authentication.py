"""DRF authentication with hashed API tokens (`Authorization: Token <key>`, as before)."""

from rest_framework import authentication, exceptions

from integrations.errors import DomainError

from .tokens import token_authenticate


class ApiTokenAuthentication(authentication.TokenAuthentication):
    keyword = "Token"

    def authenticate_credentials(self, key):
        try:
            token = token_authenticate(key=key)
        except DomainError as exc:
            raise exceptions.AuthenticationFailed(exc.detail, code=exc.code) from None
        return token.user, token
