# IAM roles for service accounts (IRSA), one per service, each trusted only by its own
# Kubernetes service account:
#   ingestor  consume login-queue, send invalid messages to login-queue-dlq
#   vault     GenerateDataKey / Decrypt with the vault key
#   writer    no permissions (it only talks to PostgreSQL); the role pins the pod's AWS
#             identity so that it never falls back to the node's instance role

locals {
  oidc_issuer = element(split("oidc-provider/", var.eks_oidc_provider_arn), 1)

  service_accounts = {
    ingestor = "${var.k8s_service_account_prefix}-ingestor"
    vault    = "${var.k8s_service_account_prefix}-vault"
    writer   = "${var.k8s_service_account_prefix}-writer"
  }
}

data "aws_iam_policy_document" "irsa_trust" {
  for_each = local.service_accounts

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.eks_oidc_provider_arn]
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
}

resource "aws_iam_role" "service" {
  for_each = local.service_accounts

  name               = "${var.name}-${each.key}"
  description        = "${var.name} ${each.key} (IRSA: ${var.k8s_namespace}/${each.value})"
  assume_role_policy = data.aws_iam_policy_document.irsa_trust[each.key].json
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
}

resource "aws_iam_role_policy" "ingestor" {
  name   = "${var.name}-ingestor"
  role   = aws_iam_role.service["ingestor"].id
  policy = data.aws_iam_policy_document.ingestor.json
}

data "aws_iam_policy_document" "vault" {
  statement {
    sid = "EnvelopeEncryption"
    actions = [
      "kms:GenerateDataKey",
      "kms:Decrypt",
    ]
    resources = [aws_kms_key.vault.arn]
  }
}

resource "aws_iam_role_policy" "vault" {
  name   = "${var.name}-vault"
  role   = aws_iam_role.service["vault"].id
  policy = data.aws_iam_policy_document.vault.json
}
