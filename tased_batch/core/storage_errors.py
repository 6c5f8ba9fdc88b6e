"""Storage problems a new user meets first, as one line that names the cause and the fix.

Missing credentials, an unreachable endpoint, a missing bucket, denied access and a wrong region
surface from botocore/s3fs as tracebacks (or, for an unreachable endpoint, after a long series
of retries). :func:`classify` turns such an exception into a :class:`StorageError`;
:func:`check_storage` makes a command's first contact with an ``s3://`` URI a quick probe with a
short connect timeout and one retry, so that these problems are reported in seconds, before
any planning or model loading. Exceptions are recognised by their class names and botocore's
error codes, so nothing here imports botocore.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from tased_batch.core.errors import StorageError

CREDENTIALS_HINT = (
    "give AWS credentials the standard way (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
    "or an instance/pod role); for a public bucket pass --storage-option anon=true"
)
ENDPOINT_HINT = (
    "check the network; for an S3-compatible store (MinIO, Ceph, R2) set AWS_ENDPOINT_URL or "
    "--storage-option endpoint_url=URL"
)
REGION_HINT = "set AWS_DEFAULT_REGION={region} or --storage-option client_kwargs.region_name={region}"

_NO_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError", "NoAuthTokenError"}
_UNREACHABLE = {
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ConnectionClosedError",
    "ProxyConnectionError",
    "ClientConnectorError",
    "ClientConnectorDNSError",
    "ServerTimeoutError",
}
_BAD_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidToken",
    "TokenRefreshRequired",
    "InvalidClientTokenId",
}
_DENIED = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "AccountProblem"}
_WRONG_REGION = {"PermanentRedirect", "301", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
_NO_BUCKET = {"NoSuchBucket"}

# Probe settings: a user waits seconds, not minutes, to learn that an endpoint is unreachable.
PROBE_CONNECT_TIMEOUT = 3
PROBE_READ_TIMEOUT = 20
PROBE_ATTEMPTS = 2


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _error(exc: BaseException) -> dict:
    response = getattr(exc, "response", None)
    return response if isinstance(response, dict) else {}


def _code(exc: BaseException) -> str | None:
    code = _error(exc).get("Error", {}).get("Code")
    return str(code) if code is not None else None


def _bucket(uri: str | None, exc: BaseException) -> str | None:
    name = _error(exc).get("Error", {}).get("BucketName")
    if name:
        return str(name)
    if uri and "://" in uri:
        return uri.split("://", 1)[1].split("/", 1)[0] or None
    return None


def _region(exc: BaseException) -> str | None:
    """The bucket's region, from the redirect headers or from the error text ("expecting 'eu-west-1'")."""
    response = _error(exc)
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    region = headers.get("x-amz-bucket-region") or response.get("Error", {}).get("Region")
    if region:
        return str(region)
    match = re.search(r"expecting '([a-z0-9-]+)'", str(exc))
    return match.group(1) if match else None


def _endpoint(exc: BaseException) -> str | None:
    url = getattr(exc, "kwargs", {}).get("endpoint_url") if isinstance(getattr(exc, "kwargs", None), dict) else None
    if url:
        return str(url).split("?", 1)[0]
    match = re.search(r"https?://[^\s\"'/]+", str(exc))
    return match.group(0) if match else None


def classify(exc: BaseException, uri: str | None = None) -> StorageError | None:
    """A :class:`StorageError` naming cause and fix for a storage exception, or None if it is not one of those."""
    where = uri or "S3"
    for e in _chain(exc):
        name = type(e).__name__
        if name in _NO_CREDENTIALS:
            return StorageError(f"{where}: no AWS credentials found", CREDENTIALS_HINT)
        if name in _UNREACHABLE:
            endpoint = _endpoint(e) or "the S3 endpoint"
            return StorageError(f"{where}: cannot connect to {endpoint}", ENDPOINT_HINT)
        code = _code(e)
        if code is None:
            continue
        bucket = _bucket(uri, e)
        if code in _NO_BUCKET:
            return StorageError(
                f"{where}: bucket {bucket!r} does not exist",
                "check the bucket name, and that AWS_ENDPOINT_URL / endpoint_url points at the store that holds it",
            )
        if code in _BAD_CREDENTIALS:
            return StorageError(
                f"{where}: the AWS credentials were refused ({code})",
                "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or renew an expired session token",
            )
        if code in _WRONG_REGION:
            region = _region(e)
            hint = REGION_HINT.format(region=region) if region else REGION_HINT.format(region="THE_BUCKETS_REGION")
            found = f" (it is in {region})" if region else ""
            return StorageError(f"{where}: bucket {bucket!r} is in another region{found}", hint)
        if code in _DENIED:
            return StorageError(
                f"{where}: access denied to bucket {bucket!r}",
                "the credentials in use lack permission (s3:ListBucket, s3:GetObject, s3:PutObject as needed); "
                "for a public bucket pass --storage-option anon=true",
            )
    return None


def _fixed_part(uri: str) -> str:
    """The URI up to its first glob or brace character: what a probe can look at."""
    match = re.search(r"[*?\[{]", uri)
    return uri[: match.start()] if match else uri


def _probe_options(options: dict) -> dict:
    config = dict(options.get("config_kwargs") or {})
    config.setdefault("connect_timeout", PROBE_CONNECT_TIMEOUT)
    config.setdefault("read_timeout", PROBE_READ_TIMEOUT)
    config.setdefault("retries", {"total_max_attempts": PROBE_ATTEMPTS, "mode": "standard"})
    return {**options, "config_kwargs": config, "skip_instance_cache": True}


def check_storage(uris: Iterable[str | None], storage_options: dict | None = None) -> None:
    """Probe each ``s3://`` URI once, quickly; raise a :class:`StorageError` for a classified problem.

    A missing object or prefix is not a problem here (an output may not exist yet; a missing
    input is reported by the command itself); neither is anything the probe cannot classify.
    """
    seen: set[str] = set()
    for uri in uris:
        if not uri or not uri.startswith(("s3://", "s3a://")):
            continue
        target = _fixed_part(uri).rstrip("/")
        if target in seen:
            continue
        seen.add(target)
        _probe(uri, target, storage_options or {})


def _probe(uri: str, target: str, options: dict) -> None:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(target, **_probe_options(options))
        fs.retries = 1  # s3fs's own retry loop; botocore's (above) is the one with the short timeout
        fs.info(path or target)
    except Exception as e:  # the probe only reports what it can name; the command reports the rest
        problem = classify(e, uri)
        if problem is not None:
            raise problem from e
