# CloudWatch: the log groups of the three services, the alarms on the queues and the database,
# and the SNS topic they notify.
#
#   logs key      encrypts the log groups; CloudWatch Logs uses it only under the encryption
#                 context of one of these log groups
#   alarms key    encrypts the alarm topic; CloudWatch (publishing alarms) and SNS use it
#   log groups    /<name>/vault, /<name>/writer, /<name>/ingestor, written by Fluent Bit
#                 (deploy/fluent-bit) with the role below
#   alarms        the source queue's oldest message, the DLQ's visible messages, the database's
#                 CPU, free storage and connections, and the read replica's lag
#
# The Prometheus alerts (deploy/observability/prometheus/alerts.yml) watch the pipeline from its
# own metrics; these alarms watch it from AWS's side, so they still fire when the cluster or its
# Prometheus is down.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  partition    = data.aws_partition.current.partition
  account_id   = data.aws_caller_identity.current.account_id
  account_root = "arn:${local.partition}:iam::${local.account_id}:root"

  oidc_issuer = element(split("oidc-provider/", var.oidc_provider_arn), 1)

  logged_services = ["vault", "writer", "ingestor"]

  log_group_names = { for service in local.logged_services : service => "/${var.name}/${service}" }
  log_group_arns = {
    for service, name in local.log_group_names :
    service => "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:${name}"
  }

  alarm_actions = [aws_sns_topic.alarms.arn]
}

# --- Logs key ----------------------------------------------------------------------------------

# CloudWatch Logs encrypts and decrypts with the key itself, under the encryption context
# aws:logs:arn = <log group ARN>: the condition names the three log groups, so no other log
# group of the account can be associated with this key. Readers of the logs need no permission
# on it. Grants are denied as on the other keys, but not Encrypt (modules/pipeline/kms.tf):
# CloudWatch Logs calls it.
data "aws_iam_policy_document" "logs_key" {
  source_policy_documents = [var.key_administration_policy_json]

  statement {
    sid = "CloudWatchLogsForTheServiceLogGroups"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = values(local.log_group_arns)
    }
  }

  # As on the other keys: a grant would give an administrator the use of the key.
  statement {
    sid       = "DenyGrants"
    effect    = "Deny"
    actions   = ["kms:CreateGrant"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
  }
}

resource "aws_kms_key" "logs" {
  description              = "${var.name} logs: encrypts the services' CloudWatch log groups"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  deletion_window_in_days  = var.kms_deletion_window_days
  policy                   = data.aws_iam_policy_document.logs_key.json
}

resource "aws_kms_alias" "logs" {
  name          = "alias/${var.name}-logs"
  target_key_id = aws_kms_key.logs.key_id
}

# --- Log groups --------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "service" {
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (30 days by default): these are operational logs, which carry no personal value (no value, token or message id is logged), and the audit trail of the vault is kept in its database, not here; set 365 or more where a policy requires a year
  for_each = local.log_group_names

  name              = each.value
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.logs.arn

  tags = { Service = each.key }
}

# --- Alarm topic -------------------------------------------------------------------------------

# As on the pipeline's keys (modules/pipeline/kms.tf): CloudWatch only asks for data keys, so
# nobody may wrap a plaintext of their own choosing, and nobody may grant the key's use.
data "aws_iam_policy_document" "no_foreign_ciphertexts" {
  statement {
    sid       = "DenyEncryptAndReEncrypt"
    effect    = "Deny"
    actions   = ["kms:Encrypt", "kms:ReEncrypt*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
  }

  statement {
    sid       = "DenyGrants"
    effect    = "Deny"
    actions   = ["kms:CreateGrant"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
  }
}

# SNS encrypts each message with a data key of this key, asked for with the publisher's
# credentials: CloudWatch, for its alarms, needs GenerateDataKey and Decrypt (AWS's documented
# statement: an alarm cannot publish to a topic under alias/aws/sns). Subscribers need nothing.
data "aws_iam_policy_document" "alarms_key" {
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" is the key it is attached to; CloudWatch may only GenerateDataKey and Decrypt with it, for the alarm topic the key encrypts
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" is the key it is attached to; CloudWatch may only GenerateDataKey and Decrypt with it, for the alarm topic the key encrypts
  source_policy_documents = [
    var.key_administration_policy_json,
    data.aws_iam_policy_document.no_foreign_ciphertexts.json,
  ]

  statement {
    sid       = "CloudWatchAlarmsPublish"
    actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
  }
}

resource "aws_kms_key" "alarms" {
  description              = "${var.name} alarms: encrypts the alarm topic"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  deletion_window_in_days  = var.kms_deletion_window_days
  policy                   = data.aws_iam_policy_document.alarms_key.json
}

resource "aws_kms_alias" "alarms" {
  name          = "alias/${var.name}-alarms"
  target_key_id = aws_kms_key.alarms.key_id
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.alarms.arn
}

# Only this account's CloudWatch alarms publish; the account's principals manage the topic and
# its subscriptions through IAM; nothing without TLS.
data "aws_iam_policy_document" "alarms_topic" {
  statement {
    sid       = "CloudWatchAlarmsOfThisAccount"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:cloudwatch:${var.region}:${local.account_id}:alarm:*"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid = "AccountManagesTheTopic"
    actions = [
      "sns:GetTopicAttributes",
      "sns:SetTopicAttributes",
      "sns:AddPermission",
      "sns:RemovePermission",
      "sns:DeleteTopic",
      "sns:Subscribe",
      "sns:ListSubscriptionsByTopic",
      "sns:Publish",
    ]
    resources = [aws_sns_topic.alarms.arn]

    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]

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

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms_topic.json
}

# An email subscription stays pending until its address confirms it.
resource "aws_sns_topic_subscription" "alarms" {
  for_each = { for subscription in var.alarm_subscriptions : "${subscription.protocol}:${subscription.endpoint}" => subscription }

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = each.value.protocol
  endpoint  = each.value.endpoint
}

# --- Queue alarms ------------------------------------------------------------------------------

# SQS publishes its metrics every minute while a queue is active (it holds messages or is
# called; the ingestor calls GetQueueAttributes on both every 15 s): no data means an idle,
# empty queue.
resource "aws_cloudwatch_metric_alarm" "queue_oldest_message" {
  alarm_name        = "${var.name}-${var.queue_name}-oldest-message"
  alarm_description = "The oldest message of ${var.queue_name} has waited over ${var.queue_oldest_message_alarm_seconds} s for 5 minutes: the ingestor is down or falls behind (docs/scaling.md). Prometheus: FetchrewardOldMessages, FetchrewardNoProgress."

  namespace   = "AWS/SQS"
  metric_name = "ApproximateAgeOfOldestMessage"
  dimensions  = { QueueName = var.queue_name }
  statistic   = "Maximum"
  period      = 60

  comparison_operator = "GreaterThanThreshold"
  threshold           = var.queue_oldest_message_alarm_seconds
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  alarm_name        = "${var.name}-${var.dlq_name}-not-empty"
  alarm_description = "${var.dlq_name} holds messages: triage them with `fetchreward dlq list` before they expire after ${var.dlq_retention_seconds} s. Prometheus: FetchrewardDeadLetters, FetchrewardDlqNotEmpty."

  namespace   = "AWS/SQS"
  metric_name = "ApproximateNumberOfMessagesVisible"
  dimensions  = { QueueName = var.dlq_name }
  statistic   = "Maximum"
  period      = 300

  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
}

# --- Database alarms ---------------------------------------------------------------------------

# RDS publishes every minute while the instance runs: missing data is left as missing
# (INSUFFICIENT_DATA), which the instance's own events explain.
resource "aws_cloudwatch_metric_alarm" "db_cpu" {
  alarm_name        = "${var.name}-db-cpu"
  alarm_description = "The CPU of ${var.db_instance_identifier} has averaged over ${var.db_cpu_alarm_percent}% for 15 minutes: see Performance Insights for the queries."

  namespace   = "AWS/RDS"
  metric_name = "CPUUtilization"
  dimensions  = { DBInstanceIdentifier = var.db_instance_identifier }
  statistic   = "Average"
  period      = 300

  comparison_operator = "GreaterThanThreshold"
  threshold           = var.db_cpu_alarm_percent
  evaluation_periods  = 3
  treat_missing_data  = "missing"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "db_free_storage" {
  alarm_name        = "${var.name}-db-free-storage"
  alarm_description = "${var.db_instance_identifier} has had under ${var.db_free_storage_alarm_gib} GiB free for 15 minutes: storage autoscaling (up to ${var.db_max_allocated_storage} GiB) has not kept up or has reached its ceiling."

  namespace   = "AWS/RDS"
  metric_name = "FreeStorageSpace"
  dimensions  = { DBInstanceIdentifier = var.db_instance_identifier }
  statistic   = "Minimum"
  period      = 300

  comparison_operator = "LessThanThreshold"
  threshold           = var.db_free_storage_alarm_gib * 1024 * 1024 * 1024
  evaluation_periods  = 3
  treat_missing_data  = "missing"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "db_connections" {
  alarm_name        = "${var.name}-db-connections"
  alarm_description = "${var.db_instance_identifier} has held over ${var.db_connections_alarm_count} connections for 15 minutes: more than the services' pools open (replicas x DATABASE_POOL_SIZE). Prometheus: FetchrewardDatabasePoolExhausted."

  namespace   = "AWS/RDS"
  metric_name = "DatabaseConnections"
  dimensions  = { DBInstanceIdentifier = var.db_instance_identifier }
  statistic   = "Maximum"
  period      = 300

  comparison_operator = "GreaterThanThreshold"
  threshold           = var.db_connections_alarm_count
  evaluation_periods  = 3
  treat_missing_data  = "missing"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
}

# The read replica of modules/data (or any replica var.db_replica_identifier names); none when
# it is empty.
resource "aws_cloudwatch_metric_alarm" "db_replica_lag" {
  count = var.db_replica_identifier != "" ? 1 : 0

  alarm_name        = "${var.name}-db-replica-lag"
  alarm_description = "The read replica ${var.db_replica_identifier} has lagged over ${var.db_replica_lag_alarm_seconds} s behind ${var.db_instance_identifier} for 15 minutes."

  namespace   = "AWS/RDS"
  metric_name = "ReplicaLag"
  dimensions  = { DBInstanceIdentifier = var.db_replica_identifier }
  statistic   = "Maximum"
  period      = 300

  comparison_operator = "GreaterThanThreshold"
  threshold           = var.db_replica_lag_alarm_seconds
  evaluation_periods  = 3
  treat_missing_data  = "missing"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
}

# --- Fluent Bit --------------------------------------------------------------------------------

# IRSA role of the Fluent Bit DaemonSet of deploy/fluent-bit (the cluster's OIDC provider,
# modules/cluster): creates streams in and writes to
# the three log groups, nothing else (they exist: Fluent Bit never creates a group), and, when
# var.opensearch_domain_arn names a domain, posts bulk requests to it.
data "aws_iam_policy_document" "fluent_bit_trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.fluent_bit_namespace}:${var.fluent_bit_service_account}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "fluent_bit" {
  name               = "${var.name}-fluent-bit"
  description        = "${var.name} Fluent Bit (IRSA: ${var.fluent_bit_namespace}/${var.fluent_bit_service_account}): ships the services' logs"
  assume_role_policy = data.aws_iam_policy_document.fluent_bit_trust.json
}

data "aws_iam_policy_document" "fluent_bit" {
  statement {
    sid = "WriteServiceLogs"
    actions = [
      "logs:CreateLogStream",
      "logs:DescribeLogStreams",
      "logs:PutLogEvents",
    ]
    resources = flatten([for arn in values(local.log_group_arns) : [arn, "${arn}:*"]])
  }

  dynamic "statement" {
    for_each = var.opensearch_domain_arn != null ? [1] : []
    content {
      sid       = "WriteOpenSearch"
      actions   = ["es:ESHttpGet", "es:ESHttpPost", "es:ESHttpPut"]
      resources = ["${var.opensearch_domain_arn}/*"]
    }
  }
}

resource "aws_iam_role_policy" "fluent_bit" {
  name   = "write-logs"
  role   = aws_iam_role.fluent_bit.id
  policy = data.aws_iam_policy_document.fluent_bit.json
}
