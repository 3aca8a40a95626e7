"""The blob store's S3 backend (AWS S3, MinIO, Ceph, R2...) through aiobotocore: key = <prefix><sha256>.

Each object carries its ContentType, its sha256 as user metadata and as ChecksumSHA256 (which S3 verifies
against the upload server-side). The store re-hashes every read; a presigned URL is only signed for an object
whose metadata still names its sha256, so bytes overwritten behind the store's back are never handed out.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from services.runtime.blob_backend import BlobCorrupt, BlobNotFound, BlobTooLarge, BlobUnavailable
from services.runtime.settings import RuntimeSettings

__all__ = ["S3Backend"]

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_DENIED = {"403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


class S3Backend:
    """Blobs as objects of one S3 bucket; build it with `S3Backend.open` and `close` it at shutdown."""

    def __init__(self, client: Any, signer: Any, bucket: str, prefix: str, stack: contextlib.AsyncExitStack) -> None:
        self._client, self._signer, self._stack = client, signer, stack
        self.bucket, self.prefix = bucket, prefix

    @classmethod
    async def open(cls, settings: RuntimeSettings, *, bucket: str | None = None, timeout_s: float) -> S3Backend:
        """Connect and check the bucket is there and ours to use, else BlobUnavailable saying what to do."""
        bucket = bucket or settings.s3_bucket
        session = get_session()
        stack = contextlib.AsyncExitStack()
        try:
            client = await stack.enter_async_context(
                session.create_client("s3", **_client_options(settings, settings.s3_endpoint_url)))
            # Browsers may reach the store under another name than the services do (a CDN, an ingress);
            # signing binds the host, so URLs for them are signed by a client of that endpoint (no I/O).
            public = settings.s3_public_endpoint_url
            signer = client
            if public and public != settings.s3_endpoint_url:
                signer = await stack.enter_async_context(
                    session.create_client("s3", **_client_options(settings, public)))
            await asyncio.wait_for(_check_bucket(client, bucket, settings), timeout_s)
        except BaseException:
            await stack.aclose()
            raise
        return cls(client, signer, bucket, settings.s3_prefix, stack)

    def _key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    async def exists(self, name: str) -> bool:
        return await self._head(name) is not None

    async def put(self, name: str, data: bytes, media_type: str) -> None:
        try:
            await self._client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data, ContentType=media_type,
                                          ChecksumSHA256=_base64_digest(name), Metadata={"sha256": name})
        except (ClientError, BotoCoreError) as exc:
            raise self._unavailable("put", name, exc) from exc

    async def read(self, name: str, max_bytes: int) -> bytes:
        try:
            response = await self._client.get_object(Bucket=self.bucket, Key=self._key(name))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise BlobNotFound(f"no blob {name}") from None
            raise self._unavailable("get", name, exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("get", name, exc) from exc
        async with response["Body"] as body:
            # Before reading the body: an object over the limit is never loaded.
            if response["ContentLength"] > max_bytes:
                raise BlobTooLarge(f"blob {name} of {response['ContentLength']} bytes is over the limit of "
                                   f"{max_bytes} bytes")
            try:
                return await body.read()
            except (BotoCoreError, OSError) as exc:
                raise self._unavailable("get", name, exc) from exc

    async def delete(self, name: str) -> bool:
        # S3 answers 204 whether or not the key existed; the HEAD tells the caller which.
        if await self._head(name) is None:
            return False
        try:
            await self._client.delete_object(Bucket=self.bucket, Key=self._key(name))
        except (ClientError, BotoCoreError) as exc:
            raise self._unavailable("delete", name, exc) from exc
        return True

    async def url(self, name: str, ttl_s: int, filename: str | None) -> str | None:
        head = await self._head(name)
        if head is None:
            raise BlobNotFound(f"no blob {name}")
        stored = head.get("ChecksumSHA256")
        if head.get("Metadata", {}).get("sha256") != name or (stored is not None and stored != _base64_digest(name)):
            raise BlobCorrupt(f"blob {name}: the object's metadata does not name its sha256 (written by something "
                              "else than this store)")
        params = {"Bucket": self.bucket, "Key": self._key(name)}
        if filename is not None:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return await self._signer.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl_s)

    async def close(self) -> None:
        await self._stack.aclose()

    async def _head(self, name: str) -> dict[str, Any] | None:
        try:
            return await self._client.head_object(Bucket=self.bucket, Key=self._key(name), ChecksumMode="ENABLED")
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise self._unavailable("head", name, exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("head", name, exc) from exc

    def _unavailable(self, operation: str, name: str, exc: Exception) -> BlobUnavailable:
        return BlobUnavailable(f"S3 {operation} of s3://{self.bucket}/{self._key(name)} failed: {exc}")


def _client_options(settings: RuntimeSettings, endpoint_url: str | None) -> dict[str, Any]:
    config = AioConfig(
        connect_timeout=settings.s3_connect_timeout_s,
        read_timeout=settings.s3_read_timeout_s,
        retries={"max_attempts": settings.s3_max_attempts, "mode": "standard"},
        signature_version="s3v4",
        s3={"addressing_style": settings.s3_addressing_style},
        # We send ChecksumSHA256 ourselves and hash every read; botocore's default CRC trailers
        # (aws-chunked uploads) are refused by several S3-compatible servers.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    options: dict[str, Any] = {"region_name": settings.s3_region, "endpoint_url": endpoint_url, "config": config}
    if settings.s3_access_key_id is not None and settings.s3_secret_access_key is not None:
        options["aws_access_key_id"] = settings.s3_access_key_id.get_secret_value()
        options["aws_secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
    # Else botocore's default chain: AWS_* variables, ~/.aws, web identity (IRSA), instance metadata.
    return options


async def _check_bucket(client: Any, bucket: str, settings: RuntimeSettings) -> None:
    where = settings.s3_endpoint_url or f"AWS S3 ({settings.s3_region})"
    try:
        await client.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        code = _code(exc)
        if code in _DENIED:
            raise BlobUnavailable(
                f"S3 bucket {bucket!r} at {where} refuses these credentials ({code}): grant them s3:ListBucket, "
                "s3:GetObject, s3:PutObject and s3:DeleteObject on it, or set LIKENESS_S3_ACCESS_KEY_ID / "
                "LIKENESS_S3_SECRET_ACCESS_KEY") from None
        if code not in _MISSING:
            raise BlobUnavailable(f"S3 bucket {bucket!r} at {where} cannot be checked: {exc}") from None
    except BotoCoreError as exc:
        raise BlobUnavailable(f"S3 at {where} cannot be reached ({exc}): check LIKENESS_S3_ENDPOINT_URL and "
                              "that the server is up") from None
    if not settings.s3_create_bucket:
        raise BlobUnavailable(
            f"S3 bucket {bucket!r} does not exist at {where}: create it (e.g. `aws s3 mb s3://{bucket}`), or point "
            "LIKENESS_S3_BUCKET at an existing one (LIKENESS_S3_CREATE_BUCKET=true creates it, outside prod)")
    options: dict[str, Any] = {"Bucket": bucket}
    if settings.s3_region != "us-east-1":  # us-east-1 refuses an explicit LocationConstraint
        options["CreateBucketConfiguration"] = {"LocationConstraint": settings.s3_region}
    try:
        await client.create_bucket(**options)
    except ClientError as exc:
        if _code(exc) not in {"BucketAlreadyOwnedByYou"}:  # another replica made it first
            raise BlobUnavailable(f"S3 bucket {bucket!r} could not be created at {where}: {exc}") from None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _base64_digest(name: str) -> str:
    """The hex sha256 `name` as S3's ChecksumSHA256 wants it: base64 of the 32 raw bytes."""
    return base64.b64encode(bytes.fromhex(name)).decode("ascii")
