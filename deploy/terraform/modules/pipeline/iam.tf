# One IAM role per service, each trusted only by its own Kubernetes service account, through IRSA
# (the cluster's OIDC provider, modules/cluster) and through EKS Pod Identity (the association
# below), and the DLQ triage role for operators:
#   ingestor    consume login-queue, send to login-queue-dlq, seal dead-lettered bodies with
#               the DLQ key (GenerateDataKey only, never Decrypt), SQS key through SQS
#   vault       GenerateDataKey / Decrypt with the vault key under its encryption context; with
#               generation_kms_keys, create, use and schedule the deletion of its generation keys
#   writer      no permissions (it only talks to PostgreSQL); the role pins the pod's AWS
#               identity so that it never falls back to the node's instance role
#   archive     the monthly archive job (the chart's CronJob, fetchreward archive run): write,
#               read and list user_logins/ under the archive prefix of the archive bucket
#               (modules/data), with the archive key through S3; never delete
#   dlq-triage  read, open, delete and redrive dead letters; only when triage_principal_arns
#               names someone who may assume it

locals {
  oidc_issuer = element(split("oidc-provider/", var.oidc_provider_arn), 1)

  service_accounts = {
    ingestor = "${var.k8s_service_account_prefix}-ingestor"
    vault    = "${var.k8s_service_account_prefix}-vault"
    writer   = "${var.k8s_service_account_prefix}-writer"
    archive  = "${var.k8s_service_account_prefix}-archive"
  }

  triage_enabled = length(var.triage_principal_arns) > 0
}

data "aws_iam_policy_document" "service_trust" {
  for_each = local.service_accounts

  statement {
    sid     = "Irsa"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.k8s_namespace}:${each.value}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }

  # EKS Pod Identity: EKS assumes the role for a pod whose service account has an association
  # with it; the session tags it sets name the cluster, the namespace and the service account,
  # and must be this cluster's and this service's.
  statement {
    sid     = "EksPodIdentity"
    actions = ["sts:AssumeRole", "sts:TagSession"]

    principals {
      type        = "Service"
      identifiers = ["pods.eks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/eks-cluster-arn"
      values   = [var.cluster_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/kubernetes-namespace"
      values   = [var.k8s_namespace]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/kubernetes-service-account"
      values   = [each.value]
    }
  }
}

resource "aws_iam_role" "service" {
  for_each = local.service_accounts

  name               = "${var.name}-${each.key}"
  description        = "${var.name} ${each.key} (IRSA and EKS Pod Identity: ${var.k8s_namespace}/${each.value})"
  assume_role_policy = data.aws_iam_policy_document.service_trust[each.key].json
}

# The other half of the Pod Identity trust above: EKS gives pods of this service account this
# role. (Here rather than in modules/cluster, so that the cluster does not depend on these roles
# while they depend on its OIDC provider.)
resource "aws_eks_pod_identity_association" "service" {
  for_each = local.service_accounts

  cluster_name    = var.cluster_name
  namespace       = var.k8s_namespace
  service_account = each.value
  role_arn        = aws_iam_role.service[each.key].arn
}

data "aws_iam_policy_document" "ingestor" {
  statement {
    sid = "ConsumeLoginQueue"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.main.arn]
  }

  statement {
    sid       = "DeadLetterInvalidMessages"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
  }

  # SSE-KMS of both queues: Decrypt to receive, GenerateDataKey (and Decrypt) to send.
  statement {
    sid       = "QueueEncryption"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.sqs.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.sqs_via_service]
    }
  }

  statement {
    sid       = "SealDeadLetters"
    actions   = ["kms:GenerateDataKey"]
    resources = [aws_kms_key.dlq.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:fetchreward:purpose"
      values   = ["dlq"]
    }
  }

  statement {
    sid       = "NeverOpenDeadLetters"
    effect    = "Deny"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.dlq.arn]
  }
}

resource "aws_iam_role_policy" "ingestor" {
  name   = "${var.name}-ingestor"
  role   = aws_iam_role.service["ingestor"].id
  policy = data.aws_iam_policy_document.ingestor.json
}

# --- Archive job ---------------------------------------------------------------------------------

locals {
  # What the job reads and writes: <prefix>/user_logins/month=YYYY-MM/{user_logins_YYYY_MM.parquet,
  # manifest.json}.
  archive_table_prefix = "${var.archive_prefix}/user_logins/"
  archive_objects_arn  = "${var.archive_bucket_arn}/${local.archive_table_prefix}*"
}

data "aws_iam_policy_document" "archive" {
  # `archive list` lists under the prefix. IfExists: a GetObject of a key that does not exist
  # (the manifest of a month not archived yet, which the job looks for first) answers NoSuchKey
  # only to a caller allowed to list the bucket, and that check carries no prefix; without one
  # the job would be told AccessDenied. Listing outside the prefix shows key names only (the
  # objects stay out of reach).
  statement {
    sid       = "ListTheArchive"
    actions   = ["s3:ListBucket"]
    resources = [var.archive_bucket_arn]

    condition {
      test     = "StringLikeIfExists"
      variable = "s3:prefix"
      values   = ["${local.archive_table_prefix}*"]
    }
  }

  statement {
    sid       = "WriteAndReadTheArchive"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = [local.archive_objects_arn]
  }

  # SSE-KMS: S3 asks for a data key when the job writes and decrypts one when it reads, with the
  # job's credentials, under the bucket's ARN (bucket key) or the object's.
  statement {
    sid       = "ArchiveEncryption"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [var.archive_kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.region}.amazonaws.com"]
    }

    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:aws:s3:arn"
      values   = [var.archive_bucket_arn, local.archive_objects_arn]
    }
  }

  # The job drops a partition only once its rows are verified in S3: the archive must never
  # lose an object through it, whatever else is granted to the role later.
  statement {
    sid    = "NeverDeleteArchives"
    effect = "Deny"
    actions = [
      "s3:DeleteObject",
      "s3:DeleteObjectVersion",
      "s3:BypassGovernanceRetention",
      "s3:PutLifecycleConfiguration",
      "s3:PutBucketVersioning",
    ]
    resources = [var.archive_bucket_arn, "${var.archive_bucket_arn}/*"]
  }
}

resource "aws_iam_role_policy" "archive" {
  name   = "${var.name}-archive"
  role   = aws_iam_role.service["archive"].id
  policy = data.aws_iam_policy_document.archive.json
}

locals {
  # Keys the vault creates are in this account and region and carry these tags.
  generation_key_arns = "arn:${local.partition}:kms:${var.region}:${local.account_id}:key/*"
  generation_tag_keys = ["fetchreward:deployment", "fetchreward:generation"]

  # Keys of this module and the environment's other keys (network, cluster, database, logs,
  # alarms): never tagged, untagged or scheduled for deletion by the vault.
  terraform_key_arns = concat(
    [
      aws_kms_key.vault.arn,
      aws_kms_key.sqs.arn,
      aws_kms_key.dlq.arn,
    ],
    var.protected_kms_key_arns,
  )
}

data "aws_iam_policy_document" "vault" {
  statement {
    sid       = "EnvelopeEncryption"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.vault.arn]

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

  dynamic "statement" {
    for_each = var.vault_legacy_context_decrypt ? [1] : []
    content {
      sid       = "OpenLegacyRows"
      actions   = ["kms:Decrypt"]
      resources = [aws_kms_key.vault.arn]

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
    sid       = "DescribeVaultKey"
    actions   = ["kms:DescribeKey"]
    resources = [aws_kms_key.vault.arn]
  }

  # One key per data-key generation. CreateKey with tags also needs TagResource, which KMS
  # authorizes on every key of the account: both are allowed only for requests that tag the
  # key with this deployment and no tag keys but the two of a generation key.
  dynamic "statement" {
    for_each = var.generation_kms_keys ? [1] : []
    content {
      sid       = "CreateGenerationKeys"
      actions   = ["kms:CreateKey"]
      resources = ["*"]

      condition {
        test     = "StringEquals"
        variable = "aws:RequestTag/fetchreward:deployment"
        values   = [var.deployment_id]
      }

      condition {
        test     = "ForAllValues:StringEquals"
        variable = "aws:TagKeys"
        values   = local.generation_tag_keys
      }

      condition {
        test     = "StringEquals"
        variable = "kms:KeySpec"
        values   = ["SYMMETRIC_DEFAULT"]
      }

      condition {
        test     = "StringEquals"
        variable = "kms:KeyUsage"
        values   = ["ENCRYPT_DECRYPT"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.generation_kms_keys ? [1] : []
    content {
      sid       = "TagGenerationKeys"
      actions   = ["kms:TagResource"]
      resources = ["*"]

      condition {
        test     = "StringEquals"
        variable = "aws:RequestTag/fetchreward:deployment"
        values   = [var.deployment_id]
      }

      condition {
        test     = "ForAllValues:StringEquals"
        variable = "aws:TagKeys"
        values   = local.generation_tag_keys
      }
    }
  }

  dynamic "statement" {
    for_each = var.generation_kms_keys ? [1] : []
    content {
      sid       = "UseGenerationKeys"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = [local.generation_key_arns]

      condition {
        test     = "StringEquals"
        variable = "aws:ResourceTag/fetchreward:deployment"
        values   = [var.deployment_id]
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
  }

  dynamic "statement" {
    for_each = var.generation_kms_keys ? [1] : []
    content {
      sid       = "RetireGenerationKeys"
      actions   = ["kms:DescribeKey", "kms:ScheduleKeyDeletion"]
      resources = [local.generation_key_arns]

      condition {
        test     = "StringEquals"
        variable = "aws:ResourceTag/fetchreward:deployment"
        values   = [var.deployment_id]
      }
    }
  }

  # Explicit denies outrank whatever a key policy allows, including the policy the vault
  # attaches to the keys it creates.
  statement {
    sid    = "NeverCancelRewriteOrWrap"
    effect = "Deny"
    actions = [
      "kms:CancelKeyDeletion",
      "kms:PutKeyPolicy",
      "kms:Encrypt",
      "kms:ReEncrypt*",
      "kms:CreateGrant",
    ]
    resources = ["*"]
  }

  # Retagging a key of another deployment would bring it under the statements above.
  statement {
    sid       = "NeverRetagOtherDeployments"
    effect    = "Deny"
    actions   = ["kms:TagResource"]
    resources = ["*"]

    condition {
      test     = "Null"
      variable = "aws:ResourceTag/fetchreward:deployment"
      values   = ["false"]
    }

    condition {
      test     = "StringNotEquals"
      variable = "aws:ResourceTag/fetchreward:deployment"
      values   = [var.deployment_id]
    }
  }

  statement {
    sid       = "NeverTouchTerraformKeys"
    effect    = "Deny"
    actions   = ["kms:TagResource", "kms:UntagResource", "kms:ScheduleKeyDeletion"]
    resources = local.terraform_key_arns
  }
}

resource "aws_iam_role_policy" "vault" {
  name   = "${var.name}-vault"
  role   = aws_iam_role.service["vault"].id
  policy = data.aws_iam_policy_document.vault.json
}

# --- DLQ triage ---------------------------------------------------------------------------------

# Assumed by operators (var.triage_principal_arns) to inspect, open and redrive dead letters with
# the CLI (fetchreward dlq ...). Not created when nobody is named: then nobody can open a sealed
# body.
data "aws_iam_policy_document" "triage_trust" {
  count = local.triage_enabled ? 1 : 0

  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "AWS"
      identifiers = var.triage_principal_arns
    }
  }
}

resource "aws_iam_role" "triage" {
  count = local.triage_enabled ? 1 : 0

  name                 = "${var.name}-dlq-triage"
  description          = "${var.name} DLQ triage: read, open, delete and redrive dead letters"
  assume_role_policy   = data.aws_iam_policy_document.triage_trust[0].json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "triage" {
  statement {
    sid = "WorkTheDlq"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
      "sqs:SendMessage",
    ]
    resources = [aws_sqs_queue.dlq.arn]
  }

  statement {
    sid       = "RedriveToSource"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.main.arn]
  }

  statement {
    sid       = "QueueEncryption"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.sqs.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.sqs_via_service]
    }
  }

  statement {
    sid       = "OpenSealedBodies"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.dlq.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:fetchreward:purpose"
      values   = ["dlq"]
    }
  }
}

resource "aws_iam_role_policy" "triage" {
  count = local.triage_enabled ? 1 : 0

  name   = "${var.name}-dlq-triage"
  role   = aws_iam_role.triage[0].id
  policy = data.aws_iam_policy_document.triage.json
}
