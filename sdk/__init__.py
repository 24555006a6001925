"""The Dropline SDK: a typed async client for the Dropline REST API.

Everything an integrator needs and nothing of the sync engine: the client
(:class:`DroplineClient`), its models, the exception tree (drawn in
:mod:`dropline.sdk.errors`), retries and the circuit breaker, API-key and OAuth
credentials with rotating refresh, resumable uploads and downloads (of earlier
revisions too), version history and the trash, batch uploads of small files,
transfers and webhook subscriptions, and the verification of signed webhook
deliveries::

    from dropline.sdk import ApiKeyCredentials, DroplineClient

    async with DroplineClient("https://mft.example.com", ApiKeyCredentials(key)) as client:
        entry = await client.metadata("/reports/q3.pdf")

Importing it loads no engine, database, file watcher or Qt.
"""

from __future__ import annotations

from dropline.sdk.batch import BatchItem, upload_batch
from dropline.sdk.breaker import CircuitBreaker
from dropline.sdk.client import DroplineClient
from dropline.sdk.client_ops import (
    Transfer,
    TransferError,
    Transfers,
    TransferWaitTimeout,
    WebhookDelivery,
    Webhooks,
    WebhookSubscription,
    as_link,
    to_endpoint,
    to_folder,
    to_inbox,
)
from dropline.sdk.credentials import ApiKeyCredentials, OAuthCredentials
from dropline.sdk.errors import (
    AuthenticationError,
    AuthorizationError,
    CircuitOpenError,
    ConflictError,
    ContentDamagedError,
    CursorExpiredError,
    DroplineError,
    IntegrityError,
    InvalidNameError,
    NotFoundError,
    OffsetMismatch,
    PolicyDenied,
    PreconditionFailedError,
    ProtocolError,
    RangeNotSatisfiable,
    RateLimitedError,
    ServerError,
    StorageFullError,
    TooLargeError,
    UnavailableError,
    UploadExpiredError,
    ValidationError,
)
from dropline.sdk.models import (
    Account,
    Change,
    ChangeAction,
    ChangePage,
    Entry,
    EntryPage,
    EntryType,
    Revision,
    RevisionPage,
    RevisionUser,
    Storage,
    TrashItem,
    TrashPage,
    UploadResult,
    UploadSession,
)
from dropline.sdk.resumable import download_file, upload_file
from dropline.sdk.retry import NO_RETRY, RetryPolicy
from dropline.sdk.webhooks import WebhookDeduplicator, WebhookVerificationError, verify_webhook

__all__ = [
    "NO_RETRY",
    "Account",
    "ApiKeyCredentials",
    "AuthenticationError",
    "AuthorizationError",
    "BatchItem",
    "Change",
    "ChangeAction",
    "ChangePage",
    "CircuitBreaker",
    "CircuitOpenError",
    "ConflictError",
    "ContentDamagedError",
    "CursorExpiredError",
    "DroplineClient",
    "DroplineError",
    "Entry",
    "EntryPage",
    "EntryType",
    "IntegrityError",
    "InvalidNameError",
    "NotFoundError",
    "OAuthCredentials",
    "OffsetMismatch",
    "PolicyDenied",
    "PreconditionFailedError",
    "ProtocolError",
    "RangeNotSatisfiable",
    "RateLimitedError",
    "RetryPolicy",
    "Revision",
    "RevisionPage",
    "RevisionUser",
    "ServerError",
    "Storage",
    "StorageFullError",
    "TooLargeError",
    "Transfer",
    "TransferError",
    "TransferWaitTimeout",
    "Transfers",
    "TrashItem",
    "TrashPage",
    "UnavailableError",
    "UploadExpiredError",
    "UploadResult",
    "UploadSession",
    "ValidationError",
    "WebhookDeduplicator",
    "WebhookDelivery",
    "WebhookSubscription",
    "WebhookVerificationError",
    "Webhooks",
    "as_link",
    "download_file",
    "to_endpoint",
    "to_folder",
    "to_inbox",
    "upload_batch",
    "upload_file",
    "verify_webhook",
]
