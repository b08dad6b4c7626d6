# Who administers every KMS key of an environment, as one key policy document that each module
# merges into the policies of its keys (source_policy_documents):
#
#   administrators  the account root and var.kms_admin_role_arns: administrative actions only,
#                   never Encrypt, Decrypt, GenerateDataKey*, ReEncrypt* or CreateGrant.
#                   Keeping the root here lets IAM delegate administration, so a key can never
#                   be locked out.
#
# Defined once, so that every key (network, cluster, data, pipeline, observability) names the
# same administrators and nobody gains the use of a key by administering it.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  account_root = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"

  administrators = distinct(concat([local.account_root], var.kms_admin_role_arns))

  # Not kms:Create*: on a key, that is CreateAlias and CreateGrant, and a grant would give an
  # administrator the use of the key (the keys that cannot deny CreateGrant, since their AWS
  # service needs it, included).
  administration_actions = [
    "kms:CreateAlias",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
  ]
}

data "aws_iam_policy_document" "key_administration" {
  #checkov:skip=CKV_AWS_109:A key policy's Resource "*" is the key it is attached to, not every resource; the principals are the account root and the named administrator roles
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" is the key it is attached to, not every resource; the principals are the account root and the named administrator roles
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" is the key it is attached to, not every resource; the principals are the account root and the named administrator roles
  statement {
    sid       = "KeyAdministration"
    actions   = local.administration_actions
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = local.administrators
    }
  }
}
