# The key that wraps the vault's data keys and tokenization root keys (envelope encryption).
# Only the vault's role may use it (iam.tf); the key policy delegates to IAM.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_iam_policy_document" "kms" {
  statement {
    sid       = "AccountAdministersThroughIam"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "vault" {
  description              = "${var.name} vault: wraps data keys and tokenization keys"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  deletion_window_in_days  = var.kms_deletion_window_days
  policy                   = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "vault" {
  name          = var.kms_alias
  target_key_id = aws_kms_key.vault.key_id
}
