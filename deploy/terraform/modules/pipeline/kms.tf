# KMS keys and their key policies. Every key policy names its principals:
#
#   administrators  the account root and the environment's kms_admin_role_arns
#                   (modules/key-administration): administrative actions only, never Encrypt,
#                   Decrypt, GenerateDataKey*, ReEncrypt* or CreateGrant. Keeping the root here
#                   lets IAM delegate administration, so the key can never be locked out.
#   users           named roles, each with the operations it needs and nothing more.
#
# The vault, generation, SQS and DLQ keys also refuse kms:Encrypt and kms:ReEncrypt* to
# everyone: their users only call GenerateDataKey and Decrypt, so nobody can wrap a plaintext
# of their own choosing into a blob that would be taken for one of ours. They refuse
# kms:CreateGrant as well: a grant would let an administrator give itself the use of a key
# without changing the key policy.
#
#   vault           wraps the vault's tokenization keys, and its data keys unless each
#                   generation has a key of its own (var.generation_kms_keys)
#   generation      not created here: the vault creates one per data-key generation with the
#                   policy rendered below (output generation_key_policy_json)
#   sqs             SSE-KMS of login-queue and login-queue-dlq
#   dlq             seals the bodies the ingestor dead-letters; only the triage role opens them
#   (elsewhere)     the keys of the network, cluster, data and observability modules, which the
#                   vault may never tag, untag or delete either (var.protected_kms_key_arns)

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id

  vault_role_arn    = aws_iam_role.service["vault"].arn
  ingestor_role_arn = aws_iam_role.service["ingestor"].arn
  triage_role_arns  = aws_iam_role.triage[*].arn

  sqs_via_service = "sqs.${var.region}.amazonaws.com"
}

# --- Statements shared by the key policies -----------------------------------------------------

# The administrators' statement (var.key_administration_policy_json) comes from
# modules/key-administration, shared by every key of the environment.

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

# --- Vault key ---------------------------------------------------------------------------------

# The vault's statements, shared by the vault key and the generation keys. The vault's
# encryption context is fetchreward:service=vault, fetchreward:deployment=<deployment_id>,
# fetchreward:purpose=tokenization|data and fetchreward:version=<n>; the policies pin the
# first two, so a ciphertext of another service or deployment never opens here.
data "aws_iam_policy_document" "vault_key_use" {
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" is the key it is attached to: DescribeKey for the vault on that key only
  statement {
    sid       = "VaultEnvelopeEncryption"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.vault_role_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:fetchreward:service"
      values   = ["vault"]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:fetchreward:deployment"
      values   = [var.deployment_id]
    }
  }

  # Key rows written before deployment ids were bound into the context (legacy rows) carry
  # fetchreward:service=vault without fetchreward:deployment. Decrypt only: nobody can make new
  # blobs without the deployment in their context (no GenerateDataKey without it, no Encrypt).
  dynamic "statement" {
    for_each = var.vault_legacy_context_decrypt ? [1] : []
    content {
      sid       = "VaultOpensLegacyRows"
      actions   = ["kms:Decrypt"]
      resources = ["*"]

      principals {
        type        = "AWS"
        identifiers = [local.vault_role_arn]
      }

      condition {
        test     = "StringEquals"
        variable = "kms:EncryptionContext:fetchreward:service"
        values   = ["vault"]
      }

      condition {
        test     = "Null"
        variable = "kms:EncryptionContext:fetchreward:deployment"
        values   = ["true"]
      }
    }
  }

  statement {
    sid       = "VaultDescribeKey"
    actions   = ["kms:DescribeKey"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.vault_role_arn]
    }
  }
}

data "aws_iam_policy_document" "vault_key" {
  source_policy_documents = [
    var.key_administration_policy_json,
    data.aws_iam_policy_document.no_foreign_ciphertexts.json,
    data.aws_iam_policy_document.vault_key_use.json,
  ]
}

resource "aws_kms_key" "vault" {
  description              = "${var.name} vault: wraps tokenization keys and data keys"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  deletion_window_in_days  = var.kms_deletion_window_days
  policy                   = data.aws_iam_policy_document.vault_key.json
}

resource "aws_kms_alias" "vault" {
  name          = var.kms_alias
  target_key_id = aws_kms_key.vault.key_id
}

# --- Generation keys (created by the vault) ----------------------------------------------------

# The policy the vault attaches to each generation key it creates (VAULT_GENERATION_KEY_POLICY_FILE,
# from the chart's vault.generationKeyPolicy): the vault key's policy, plus ScheduleKeyDeletion for
# the vault, which deletes the key when its generation retires. The vault cannot cancel a
# deletion (iam.tf denies it); an administrator can, within the waiting period.
data "aws_iam_policy_document" "generation_key_retirement" {
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" is the key it is attached to: the vault may schedule the deletion of its own generation key only
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" is the key it is attached to: the vault may schedule the deletion of its own generation key only
  statement {
    sid       = "VaultRetiresGeneration"
    actions   = ["kms:ScheduleKeyDeletion"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.vault_role_arn]
    }
  }
}

data "aws_iam_policy_document" "generation_key" {
  source_policy_documents = [
    var.key_administration_policy_json,
    data.aws_iam_policy_document.no_foreign_ciphertexts.json,
    data.aws_iam_policy_document.vault_key_use.json,
    data.aws_iam_policy_document.generation_key_retirement.json,
  ]
}

# --- SQS key -----------------------------------------------------------------------------------

# SQS encrypts and decrypts messages with the credentials of the caller, so each producer and
# consumer needs GenerateDataKey (send) and Decrypt (send and receive), and only through SQS.
data "aws_iam_policy_document" "sqs_key" {
  source_policy_documents = [
    var.key_administration_policy_json,
    data.aws_iam_policy_document.no_foreign_ciphertexts.json,
  ]

  statement {
    sid       = "IngestorThroughSqs"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.ingestor_role_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.sqs_via_service]
    }
  }

  dynamic "statement" {
    for_each = local.triage_enabled ? [1] : []
    content {
      sid       = "TriageThroughSqs"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = ["*"]

      principals {
        type        = "AWS"
        identifiers = local.triage_role_arns
      }

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = [local.sqs_via_service]
      }
    }
  }

  dynamic "statement" {
    for_each = length(var.sqs_producer_principal_arns) > 0 ? [1] : []
    content {
      sid       = "ProducersThroughSqs"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = ["*"]

      principals {
        type        = "AWS"
        identifiers = var.sqs_producer_principal_arns
      }

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = [local.sqs_via_service]
      }
    }
  }
}

resource "aws_kms_key" "sqs" {
  description              = "${var.name} SQS: server-side encryption of ${var.queue_name} and ${var.dlq_name}"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  deletion_window_in_days  = var.kms_deletion_window_days
  policy                   = data.aws_iam_policy_document.sqs_key.json
}

resource "aws_kms_alias" "sqs" {
  name          = var.sqs_kms_alias
  target_key_id = aws_kms_key.sqs.key_id
}

# --- DLQ key -----------------------------------------------------------------------------------

# The ingestor seals a body it dead-letters (AES-256-GCM under a data key of this key, encryption
# context fetchreward:purpose=dlq) and can never open one; the triage role opens them.
data "aws_iam_policy_document" "dlq_key" {
  source_policy_documents = [
    var.key_administration_policy_json,
    data.aws_iam_policy_document.no_foreign_ciphertexts.json,
  ]

  statement {
    sid       = "IngestorSeals"
    actions   = ["kms:GenerateDataKey"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.ingestor_role_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:fetchreward:purpose"
      values   = ["dlq"]
    }
  }

  statement {
    sid       = "IngestorNeverOpens"
    effect    = "Deny"
    actions   = ["kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.ingestor_role_arn]
    }
  }

  dynamic "statement" {
    for_each = local.triage_enabled ? [1] : []
    content {
      sid       = "TriageOpens"
      actions   = ["kms:Decrypt"]
      resources = ["*"]

      principals {
        type        = "AWS"
        identifiers = local.triage_role_arns
      }

      condition {
        test     = "StringEquals"
        variable = "kms:EncryptionContext:fetchreward:purpose"
        values   = ["dlq"]
      }
    }
  }
}

resource "aws_kms_key" "dlq" {
  description              = "${var.name} DLQ: seals the bodies of dead-lettered messages"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  deletion_window_in_days  = var.kms_deletion_window_days
  policy                   = data.aws_iam_policy_document.dlq_key.json
}

resource "aws_kms_alias" "dlq" {
  name          = var.dlq_kms_alias
  target_key_id = aws_kms_key.dlq.key_id
}
