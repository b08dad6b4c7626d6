# VPC flow logs: every accepted and rejected flow of the VPC, to a CloudWatch log group kept
# var.flow_log_retention_days (at least a year) and encrypted with a key of its own.
#
#   flow logs key   CloudWatch Logs uses it only under the encryption context of this log group
#   delivery role   assumed by the flow logs service of this account, for this account's flow
#                   logs; writes to this log group only

locals {
  flow_log_group_name = "/aws/vpc/${var.name}/flow-logs"
  flow_log_group_arn  = "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:${local.flow_log_group_name}"
}

# CloudWatch Logs encrypts and decrypts with the key itself, under the encryption context
# aws:logs:arn = <log group ARN>: no other log group can be associated with this key. Readers
# of the logs need no permission on it.
data "aws_iam_policy_document" "flow_logs_key" {
  source_policy_documents = [var.key_administration_policy_json]

  statement {
    sid = "CloudWatchLogsForTheFlowLogGroup"
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
      values   = [local.flow_log_group_arn]
    }
  }

  # A grant would give an administrator the use of the key.
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

resource "aws_kms_key" "flow_logs" {
  description              = "${var.name} network: encrypts the VPC flow logs"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  deletion_window_in_days  = var.kms_deletion_window_days
  policy                   = data.aws_iam_policy_document.flow_logs_key.json
}

resource "aws_kms_alias" "flow_logs" {
  name          = "alias/${var.name}-flow-logs"
  target_key_id = aws_kms_key.flow_logs.key_id
}

resource "aws_cloudwatch_log_group" "flow_logs" {
  name              = local.flow_log_group_name
  retention_in_days = var.flow_log_retention_days
  kms_key_id        = aws_kms_key.flow_logs.arn
}

# Trusted by the flow logs service for the flow logs of this account only (confused deputy).
data "aws_iam_policy_document" "flow_logs_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ec2:${var.region}:${local.account_id}:vpc-flow-log/*"]
    }
  }
}

resource "aws_iam_role" "flow_logs" {
  name               = "${var.name}-vpc-flow-logs"
  description        = "${var.name} network: delivers the VPC flow logs to ${local.flow_log_group_name}"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_trust.json
}

# The log group exists (created above): the role may not create groups, only streams in it.
data "aws_iam_policy_document" "flow_logs" {
  statement {
    sid = "WriteFlowLogs"
    actions = [
      "logs:CreateLogStream",
      "logs:DescribeLogStreams",
      "logs:PutLogEvents",
    ]
    resources = [local.flow_log_group_arn, "${local.flow_log_group_arn}:*"]
  }

  statement {
    sid       = "FindTheLogGroup"
    actions   = ["logs:DescribeLogGroups"]
    resources = ["arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:*"]
  }
}

resource "aws_iam_role_policy" "flow_logs" {
  name   = "write-flow-logs"
  role   = aws_iam_role.flow_logs.id
  policy = data.aws_iam_policy_document.flow_logs.json
}

resource "aws_flow_log" "vpc" {
  vpc_id                   = aws_vpc.this.id
  traffic_type             = var.flow_log_traffic_type
  log_destination_type     = "cloud-watch-logs"
  log_destination          = aws_cloudwatch_log_group.flow_logs.arn
  iam_role_arn             = aws_iam_role.flow_logs.arn
  max_aggregation_interval = 60

  tags = { Name = "${var.name}-vpc" }

  depends_on = [aws_iam_role_policy.flow_logs]
}
