"""Creates the local KMS keys and their aliases in the KMS emulator (moto), idempotently: the
vault's (FR_KMS_ALIAS, alias/fetchreward) and the one that seals the DLQ's bodies
(FR_DLQ_KMS_ALIAS, alias/fetchreward-dlq).

Run by dev/up.sh with the project's venv (.venv/bin/python; boto3 comes with moto) and the
FR_* settings of dev/env.sh in the environment. If the alias already exists nothing is created.
Prints KMS_KEY_ARN=<arn> and DLQ_KMS_KEY_ARN=<arn>, the keys behind the aliases.

moto keeps keys in memory only: when moto stops, the key is gone, and so is every data key it
wrapped. That is why dev/up.sh recreates the Postgres cluster whenever it has to start moto.
"""

import os
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError


def main() -> int:
    host = os.environ.get("FR_HOST", "127.0.0.1")
    port = os.environ.get("FR_KMS_PORT", "54599")
    alias = os.environ.get("FR_KMS_ALIAS", "alias/fetchreward")
    dlq_alias = os.environ.get("FR_DLQ_KMS_ALIAS", "alias/fetchreward-dlq")

    kms = boto3.client(
        "kms",
        endpoint_url=f"http://{host}:{port}",
        region_name=os.environ.get("FR_AWS_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("FR_AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("FR_AWS_SECRET_ACCESS_KEY", "test"),
        config=Config(retries={"max_attempts": 5, "mode": "standard"}),
    )

    # up.sh already waited for the port; this only covers the server finishing its start-up.
    deadline = time.monotonic() + 30
    while True:
        try:
            aliases = [a for p in kms.get_paginator("list_aliases").paginate() for a in p["Aliases"]]
            break
        except EndpointConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)

    arns = {}
    for name, description in [
        (alias, "fetchreward local development: wraps the vault's data keys"),
        (dlq_alias, "fetchreward local development: seals dead-lettered bodies"),
    ]:
        if not any(a["AliasName"] == name for a in aliases):
            key = kms.create_key(
                Description=description, KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT"
            )["KeyMetadata"]
            kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
        # Resolve the alias the way the services will use it, and prove it can wrap a data key.
        arns[name] = kms.describe_key(KeyId=name)["KeyMetadata"]["Arn"]
        kms.generate_data_key(KeyId=name, KeySpec="AES_256")
    print(f"KMS_KEY_ARN={arns[alias]}")
    print(f"DLQ_KMS_KEY_ARN={arns[dlq_alias]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
