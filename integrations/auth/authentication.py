"""DRF authentication with hashed API tokens (`Authorization: Token <key>`, as before)."""

from rest_framework import authentication, exceptions

from integrations.errors import DomainError

from .tokens import token_authenticate


class ApiTokenAuthentication(authentication.TokenAuthentication):
    keyword = "Token"
    along = None

    def authenticate(self, request):
        # A view may name cache keys of the user to read with the token (`token_reads_along`, tokens.token_authenticate).
        view = (getattr(request, "parser_context", None) or {}).get("view")
        self.along = getattr(view, "token_reads_along", None)
        return super().authenticate(request)

    def authenticate_credentials(self, key):
        try:
            token = token_authenticate(key=key, along=self.along)
        except DomainError as exc:
            raise exceptions.AuthenticationFailed(exc.detail, code=exc.code) from None
        return token.user, token
