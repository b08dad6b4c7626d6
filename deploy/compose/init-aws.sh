#!/bin/sh
# Creates the AWS resources the local stack expects, on the emulators. Safe to run again.
#
#   login-queue-dlq    message retention 14 days
#   login-queue        VisibilityTimeout 30, RedrivePolicy -> login-queue-dlq after 5 receives
#   alias/fetchreward  a symmetric KMS key (moto) that wraps the vault's keys
#
# fauxqs writes queue URLs as http://sqs.<region>.localhost:<port>/000000000000/<name>, taking
# the port from the request, and looks queues up by that exact string. Addressed on port 54566
# (the host port too), it gives the same URLs as the stack started without Docker.
set -eu

REGION="${AWS_REGION:-us-east-1}"
SQS_ENDPOINT="${SQS_ENDPOINT:-http://fauxqs:54566}"
KMS_ENDPOINT="${KMS_ENDPOINT:-http://moto:5000}"
KMS_ALIAS="${KMS_ALIAS:-alias/fetchreward}"
DLQ_KMS_ALIAS="${DLQ_KMS_ALIAS:-alias/fetchreward-dlq}"

sqs() { aws --endpoint-url "$SQS_ENDPOINT" --region "$REGION" --output text sqs "$@"; }
kms() { aws --endpoint-url "$KMS_ENDPOINT" --region "$REGION" --output text kms "$@"; }

# wait_until NAME COMMAND...: retries COMMAND every 2 s for up to 2 minutes.
wait_until() {
    name=$1
    shift
    tries=0
    until "$@" >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ "$tries" -ge 60 ]; then
            echo "init-aws: $name did not answer at its endpoint" >&2
            exit 1
        fi
        sleep 2
    done
}

# ensure_queue NAME ATTRIBUTES_FILE: prints the queue URL. CreateQueue is idempotent only for
# identical attributes; a queue left with other attributes is brought to the wanted ones.
ensure_queue() {
    if ! sqs create-queue --queue-name "$1" --attributes "file://$2" >/dev/null 2>&1; then
        sqs set-queue-attributes --queue-url "$(sqs get-queue-url --queue-name "$1" --query QueueUrl)" \
            --attributes "file://$2" >/dev/null
    fi
    sqs get-queue-url --queue-name "$1" --query QueueUrl
}

wait_until sqs sqs list-queues
wait_until kms kms list-keys

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

printf '{"MessageRetentionPeriod": "1209600"}\n' >"$work/dlq.json"
dlq_url=$(ensure_queue login-queue-dlq "$work/dlq.json")
dlq_arn=$(sqs get-queue-attributes --queue-url "$dlq_url" \
    --attribute-names QueueArn --query Attributes.QueueArn)

cat >"$work/queue.json" <<JSON
{
  "VisibilityTimeout": "30",
  "RedrivePolicy": "{\"deadLetterTargetArn\":\"$dlq_arn\",\"maxReceiveCount\":\"5\"}"
}
JSON
queue_url=$(ensure_queue login-queue "$work/queue.json")

# ensure_key ALIAS DESCRIPTION: the key behind ALIAS, created with it when missing.
ensure_key() {
    if key_id=$(kms describe-key --key-id "$1" --query KeyMetadata.KeyId 2>/dev/null); then
        echo "$key_id"
        return
    fi
    key_id=$(kms create-key --description "$2" \
        --key-usage ENCRYPT_DECRYPT --key-spec SYMMETRIC_DEFAULT --query KeyMetadata.KeyId)
    kms create-alias --alias-name "$1" --target-key-id "$key_id"
    echo "$key_id"
}
key_id=$(ensure_key "$KMS_ALIAS" "fetchreward vault key wrapping (local)")
dlq_key_id=$(ensure_key "$DLQ_KMS_ALIAS" "fetchreward sealed DLQ bodies (local)")

echo "init-aws: QUEUE_URL=$queue_url"
echo "init-aws: DLQ_URL=$dlq_url"
echo "init-aws: KMS key $key_id ($KMS_ALIAS)"
echo "init-aws: DLQ KMS key $dlq_key_id ($DLQ_KMS_ALIAS)"
