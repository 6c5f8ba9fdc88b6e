"""Storage problems a new user meets first: one line naming cause and fix, exit code 2, in seconds.

Against the local S3 endpoint (moto's server) and an unused loopback port; wrong-region replies,
which a local endpoint does not produce, are checked on the error objects botocore builds for them.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from typer.testing import CliRunner

from tased_batch.cli.main import app
from tased_batch.core.storage_errors import classify


def _no_credentials(monkeypatch, tmp_path) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookups on a laptop or CI


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return " ".join(result.output.split())


def _client_error(code: str, message: str = "", headers: dict | None = None, **extra) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": message, **extra},
        "ResponseMetadata": {"HTTPStatusCode": 400, "HTTPHeaders": headers or {}},
    }
    return ClientError(response, "ListObjectsV2")


def _as_s3fs_raises(error: BaseException) -> OSError:
    """s3fs re-raises botocore errors as OSError subclasses with the original as cause."""
    try:
        raise PermissionError("Forbidden") from error
    except PermissionError as wrapped:
        return wrapped


def test_run_dry_run_without_credentials_names_the_credentials_chain(monkeypatch, tmp_path):
    _no_credentials(monkeypatch, tmp_path)
    result = CliRunner().invoke(
        app, ["run", "s3://bucket/videos/", str(tmp_path / "out"), "--dry-run", "--weights", "random"]
    )
    text = _one_error_line(result)
    assert "s3://bucket/videos/" in text and "no AWS credentials" in text
    assert "AWS_ACCESS_KEY_ID" in text and "--storage-option anon=true" in text


def test_unreachable_endpoint_fails_in_seconds(s3, monkeypatch):
    dead = f"http://127.0.0.1:{_unused_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", dead)
    start = time.monotonic()
    result = CliRunner().invoke(app, ["status", f"s3://{s3['bucket']}/run"])
    seconds = time.monotonic() - start
    text = _one_error_line(result)
    assert f"cannot connect to {dead}" in text and "AWS_ENDPOINT_URL" in text
    assert seconds < 8, f"took {seconds:.1f} s"


def test_missing_bucket_is_named(s3, tmp_path):
    result = CliRunner().invoke(app, ["export", "s3://no-such-bucket-here/run", "clip", str(tmp_path / "png")])
    text = _one_error_line(result)
    assert "bucket 'no-such-bucket-here' does not exist" in text


def test_denied_access_says_which_bucket_and_what_to_do(s3, tmp_path):
    bucket = s3["bucket"]
    resources = [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    deny = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": resources}],
    }
    s3["fs"].call_s3("put_bucket_policy", Bucket=bucket, Policy=json.dumps(deny))
    try:
        for args in (
            ["run", f"s3://{bucket}/videos/", str(tmp_path / "out"), "--dry-run", "--weights", "random"],
            ["weights", "info", f"s3://{bucket}/w.pt"],
        ):
            text = _one_error_line(CliRunner().invoke(app, args))
            assert f"access denied to bucket '{bucket}'" in text and "anon=true" in text
    finally:
        s3["fs"].call_s3("delete_bucket_policy", Bucket=bucket)


def test_a_missing_prefix_in_an_existing_bucket_is_left_to_the_command(s3):
    result = CliRunner().invoke(app, ["status", f"s3://{s3['bucket']}/not-a-run"])
    assert result.exit_code == 2 and "no run found" in result.output


@pytest.mark.parametrize(
    "error, expected",
    [
        (NoCredentialsError(), ["no AWS credentials", "AWS_PROFILE", "anon=true"]),
        (
            EndpointConnectionError(endpoint_url="https://minio.local:9000/b?list-type=2"),
            ["cannot connect to https://minio.local:9000/b", "AWS_ENDPOINT_URL"],
        ),
        (
            _client_error("NoSuchBucket", "The specified bucket does not exist", BucketName="media"),
            ["bucket 'media' does not exist"],
        ),
        (_client_error("AccessDenied", "Access Denied"), ["access denied to bucket 'media'", "s3:ListBucket"]),
        (_client_error("403", "Forbidden"), ["access denied to bucket 'media'"]),
        (
            _client_error(
                "PermanentRedirect", "use the specified endpoint", headers={"x-amz-bucket-region": "eu-west-1"}
            ),
            ["another region (it is in eu-west-1)", "AWS_DEFAULT_REGION=eu-west-1"],
        ),
        (
            _client_error("301", "Moved Permanently", headers={"x-amz-bucket-region": "ap-south-1"}),
            ["it is in ap-south-1", "client_kwargs.region_name=ap-south-1"],
        ),
        (
            _client_error(
                "AuthorizationHeaderMalformed",
                "the region 'us-east-1' is wrong; expecting 'eu-central-1'",
                Region="eu-central-1",
            ),
            ["it is in eu-central-1"],
        ),
        (
            _client_error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist"),
            ["credentials were refused (InvalidAccessKeyId)"],
        ),
    ],
)
def test_each_cause_gets_its_fix(error, expected):
    for raised in (error, _as_s3fs_raises(error)):
        problem = classify(raised, "s3://media/videos/")
        assert problem is not None
        text = str(problem)
        assert text.startswith("s3://media/videos/: ")
        for part in expected:
            assert part in text, text


def test_other_errors_are_not_dressed_up_as_storage_problems():
    assert classify(ValueError("bad frame")) is None
    assert classify(FileNotFoundError("s3://b/missing.mp4")) is None
    assert classify(_client_error("InternalError", "We encountered an internal error")) is None
