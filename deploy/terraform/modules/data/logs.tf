# The log groups RDS exports the instances' logs to (postgresql, upgrade), created here so that
# RDS does not make them unencrypted and kept forever: var.log_retention_days, encrypted with a
# key that CloudWatch Logs may use for these groups only.

locals {
  postgres_log_groups = merge([
    for identifier in [var.name, local.replica_identifier] : {
      for export in local.log_exports :
      "${identifier}/${export}" => "/aws/rds/instance/${identifier}/${export}"
    }
  ]...)

  postgres_log_group_arns = [
    for name in values(local.postgres_log_groups) :
    "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:${name}"
  ]
}

data "aws_iam_policy_document" "logs_key" {
  source_policy_documents = [var.key_administration_policy_json]

  statement {
    sid = "CloudWatchLogsForTheDatabaseLogGroups"
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
      values   = local.postgres_log_group_arns
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

resource "aws_kms_key" "logs" {
  description              = "${var.name} PostgreSQL: encrypts the exported database logs"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  deletion_window_in_days  = var.kms_deletion_window_days
  policy                   = data.aws_iam_policy_document.logs_key.json
}

resource "aws_kms_alias" "logs" {
  name          = "alias/${var.name}-db-logs"
  target_key_id = aws_kms_key.logs.key_id
}

resource "aws_cloudwatch_log_group" "postgres" {
  for_each = local.postgres_log_groups

  name              = each.value
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.logs.arn
}
