"""Creates the archive bucket (FR_S3_ARCHIVE_BUCKET, fetchreward-archive) in moto's S3,
idempotently: `fetchreward archive` exports to ARCHIVE_URL, s3://<bucket>/archive.

Run by dev/up.sh with the project's venv (.venv/bin/python; boto3 comes with moto) and the
FR_* settings of dev/env.sh in the environment. moto serves S3 on the same port as KMS
(FR_KMS_PORT), and keeps buckets in memory only: a new moto has none, and the next dev/up.sh
creates it again. If the bucket already exists nothing is created.
"""

import os
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError


def main() -> int:
    host = os.environ.get("FR_HOST", "127.0.0.1")
    port = os.environ.get("FR_KMS_PORT", "54599")
    bucket = os.environ.get("FR_S3_ARCHIVE_BUCKET", "fetchreward-archive")
    region = os.environ.get("FR_AWS_REGION", "us-east-1")

    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://{host}:{port}",
        region_name=region,
        aws_access_key_id=os.environ.get("FR_AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("FR_AWS_SECRET_ACCESS_KEY", "test"),
        # Buckets as paths (S3_FORCE_PATH_STYLE=true in target/dev/env): a host name
        # <bucket>.127.0.0.1 cannot resolve.
        config=Config(
            s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}
        ),
    )

    # up.sh already waited for the port; this only covers the server finishing its start-up.
    deadline = time.monotonic() + 30
    while True:
        try:
            buckets = [b["Name"] for b in s3.list_buckets()["Buckets"]]
            break
        except EndpointConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)

    if bucket not in buckets:
        # us-east-1 takes no location constraint; every other region requires one.
        location = {}
        if region != "us-east-1":
            location = {"CreateBucketConfiguration": {"LocationConstraint": region}}
        try:
            s3.create_bucket(Bucket=bucket, **location)
        except ClientError as err:
            if err.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
                raise
    # Prove it is there and ours, the way the archive job will address it.
    s3.head_bucket(Bucket=bucket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
