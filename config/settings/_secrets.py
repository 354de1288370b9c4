"""Where secret settings come from: the environment, a file, or AWS Secrets Manager.

- `NAME` in the environment (or `.env`), as every setting;
- `NAME_FILE`: the path of a file holding the value (the Docker / Kubernetes
  secrets convention); it wins over `NAME`, one trailing newline is dropped;
- `SECRETS_MANAGER_ARN`: one AWS Secrets Manager secret whose value is a JSON
  object `{"NAME": "value", ...}`, fetched once when the process starts (boto3,
  the usual AWS credential chain, region from the ARN). It fills only names that
  neither the environment nor a `_FILE` sets, so an operator can still override
  one value by hand. `manage.py refresh_secrets` fetches it again and names what
  changed; processes pick new values up when they restart.
"""

import json
import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from environ.fileaware_mapping import FileAwareMapping


class SecretsMapping(FileAwareMapping):
    """os.environ, where `NAME_FILE` names a file that holds NAME's value."""

    def __init__(self, env=None):
        super().__init__(env, cache=False)

    def __getitem__(self, key):
        path = self.env.get(key + "_FILE")
        if not path:
            return self.env[key]
        try:
            value = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ImproperlyConfigured(f"{key}_FILE names {path!r}, which cannot be read ({exc.strerror}).") from None
        return value[:-1] if value.endswith("\n") else value


def fetch_secrets_manager(arn):
    """The JSON object stored in the secret `arn`, as a dict of strings."""
    import boto3  # only when a deployment uses Secrets Manager
    from botocore.exceptions import BotoCoreError, ClientError

    parts = arn.split(":")
    if len(parts) < 7 or parts[:3] != ["arn", "aws", "secretsmanager"]:
        raise ImproperlyConfigured(f"SECRETS_MANAGER_ARN is not a Secrets Manager ARN: {arn!r}")
    from botocore.config import Config

    from integrations import egress

    endpoint = os.environ.get("SECRETS_MANAGER_ENDPOINT_URL") or None
    client = boto3.client(
        "secretsmanager",
        region_name=parts[3],
        endpoint_url=endpoint,
        # The egress proxy, as for every outbound client (botocore's own reading has no CIDR in NO_PROXY).
        config=Config(proxies=egress.botocore_proxies(endpoint or f"https://secretsmanager.{parts[3]}.amazonaws.com")),
    )
    try:
        raw = client.get_secret_value(SecretId=arn)["SecretString"]
    except (BotoCoreError, ClientError, KeyError) as exc:
        raise ImproperlyConfigured(f"SECRETS_MANAGER_ARN could not be read: {exc}") from None
    try:
        values = json.loads(raw)
    except ValueError:
        values = None
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise ImproperlyConfigured("The secret at SECRETS_MANAGER_ARN must be a JSON object of string values.")
    return values


def apply_secrets_manager(environ=os.environ):
    """Fill the environment from SECRETS_MANAGER_ARN (if set); returns the names it filled."""
    arn = environ.get("SECRETS_MANAGER_ARN", "")
    if not arn:
        return []
    filled = []
    for name, value in fetch_secrets_manager(arn).items():
        if name not in environ and f"{name}_FILE" not in environ:
            environ[name] = value
            filled.append(name)
    return filled
