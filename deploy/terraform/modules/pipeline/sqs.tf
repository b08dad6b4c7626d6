# login-queue -> (after max_receive_count receives) -> login-queue-dlq.
# Both queues use SSE-KMS with the SQS key (kms.tf): every producer and consumer needs
# GenerateDataKey / Decrypt on it through SQS, which its key policy grants by name. (Setting
# kms_master_key_id is what turns SSE-SQS off; the provider refuses sqs_managed_sse_enabled
# beside it, even as false, once the key's ARN is known.)
#
# The ingestor seals the body of every message it dead-letters with the DLQ key before sending
# it. A message moved by the redrive policy (after max_receive_count receives) is moved by SQS
# as it is: that one is protected by the SQS key only.

locals {
  # How long SQS reuses a data key before asking KMS again (60-86400 s): fewer KMS calls, and
  # fewer KMS events in CloudTrail, against a shorter life of each data key.
  sqs_data_key_reuse_seconds = 300
}

resource "aws_sqs_queue" "dlq" {
  name                              = var.dlq_name
  message_retention_seconds         = var.dlq_retention_seconds
  kms_master_key_id                 = aws_kms_key.sqs.arn
  kms_data_key_reuse_period_seconds = local.sqs_data_key_reuse_seconds

  lifecycle {
    # A message moved by the redrive policy keeps its first enqueue time, and SQS expires it
    # counting from then: a DLQ that keeps messages for less time than login-queue would drop
    # the older ones as soon as they arrive.
    precondition {
      condition     = var.dlq_retention_seconds >= var.queue_message_retention_seconds
      error_message = "dlq_retention_seconds must be at least queue_message_retention_seconds."
    }
  }
}

resource "aws_sqs_queue" "main" {
  name                              = var.queue_name
  visibility_timeout_seconds        = var.queue_visibility_timeout_seconds
  message_retention_seconds         = var.queue_message_retention_seconds
  receive_wait_time_seconds         = 20
  kms_master_key_id                 = aws_kms_key.sqs.arn
  kms_data_key_reuse_period_seconds = local.sqs_data_key_reuse_seconds

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })
}

# Only login-queue may use the DLQ as its dead-letter queue.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.main.arn]
  })
}

# Refuse requests that do not use TLS.
data "aws_iam_policy_document" "queue_tls_only" {
  for_each = {
    main = aws_sqs_queue.main.arn
    dlq  = aws_sqs_queue.dlq.arn
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [each.value]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "main" {
  queue_url = aws_sqs_queue.main.id
  policy    = data.aws_iam_policy_document.queue_tls_only["main"].json
}

resource "aws_sqs_queue_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  policy    = data.aws_iam_policy_document.queue_tls_only["dlq"].json
}
