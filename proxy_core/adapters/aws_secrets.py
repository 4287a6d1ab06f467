"""The secrets from AWS Secrets Manager (boto3, the one module that imports it).

The secret's string holds what the secrets file holds, as YAML or JSON. boto3 reads the standard
AWS environment itself: the credentials (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a
profile, the web-identity token of EKS's IAM roles for service accounts, Pod Identity, the
instance role), ``AWS_DEFAULT_REGION`` and ``AWS_ENDPOINT_URL`` (a VPC endpoint, or an emulator in
tests). ``AWS_REGION``, which botocore does not read, reaches it through the settings.

boto3 blocks, so ``load`` runs before the server starts or on a worker thread during a refresh.
botocore's own retries are off: a read that could not reach AWS is a ``RetryableError`` and is
tried again by the gateway's one retry policy (at start-up) or by the next refresh. A client is
made for each read and closed after it: reads are minutes apart, and a fresh client also picks
up credentials that were rotated in the environment.
"""

from __future__ import annotations

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as CannotConnectError

from proxy_core.config_files import ConfigError, SecretsFile, parse_secrets
from proxy_core.retry import RetryableError

CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=10, retries={"total_max_attempts": 1, "mode": "standard"})
# Error codes AWS answers with that a later read may not meet again.
TRANSIENT_CODES = frozenset(
    {"ThrottlingException", "RequestLimitExceeded", "InternalServiceError", "InternalFailure", "ServiceUnavailable"}
)


class AwsSecretsManagerSource:
    """Implements ``SecretsSource`` over ``GetSecretValue`` of one secret (its current version)."""

    def __init__(self, secret_id: str, *, region: str | None = None) -> None:
        """``region``: ``AWS_REGION``; None leaves it to boto3 (``AWS_DEFAULT_REGION``, a profile)."""
        self._secret_id = secret_id
        self._session = boto3.session.Session(region_name=region)

    @property
    def name(self) -> str:
        return f"AWS Secrets Manager secret {self._secret_id!r}"

    def load(self) -> SecretsFile:
        return parse_secrets(self._secret_string(), self.name)

    def _secret_string(self) -> str:
        try:
            client = self._session.client("secretsmanager", config=CLIENT_CONFIG)
        except NoRegionError:
            raise ConfigError(f"{self.name}: no AWS region is configured (set AWS_REGION)") from None
        try:
            answer = client.get_secret_value(SecretId=self._secret_id)
        except ClientError as exc:
            raise self._refused(exc) from None
        except (NoCredentialsError, PartialCredentialsError):
            raise ConfigError(f"{self.name}: no AWS credentials were found") from None
        except (CannotConnectError, HTTPClientError) as exc:  # unreachable, timed out, connection dropped
            raise RetryableError(f"AWS Secrets Manager could not be reached ({type(exc).__name__})") from None
        except BotoCoreError as exc:
            raise ConfigError(f"{self.name}: {exc}") from None
        finally:
            client.close()
        text = answer.get("SecretString")
        if not isinstance(text, str):
            raise ConfigError(f"{self.name} has no SecretString (a binary secret cannot hold the secrets)")
        return text

    def _refused(self, exc: ClientError) -> Exception:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if code in TRANSIENT_CODES or status >= 500:
            return RetryableError(f"AWS Secrets Manager answered {code}")
        if code == "ResourceNotFoundException":
            return ConfigError(f"{self.name} does not exist (region {self._session.region_name})")
        return ConfigError(f"{self.name} cannot be read: AWS answered {code}")
