# The EKS cluster of one environment: its control plane, the keys and log group it uses, and who
# may administer it. Nodes: nodes.tf; add-ons: addons.tf; the IRSA OIDC provider: identity.tf;
# the image repository: ecr.tf.
#
#   endpoint        private, reached from inside the VPC; public only when
#                   var.endpoint_public_access, and then only from var.public_access_cidrs
#   secrets key     envelope encryption of Kubernetes Secrets in etcd
#   logs key        the control plane's log group /aws/eks/<name>/cluster, every log type,
#                   kept var.log_retention_days (created here, so EKS does not make it
#                   unencrypted and kept forever)
#   access          EKS access entries only (authentication mode API, no aws-auth ConfigMap);
#                   the creator of the cluster gets no implicit admin: var.cluster_admin_principal_arns
#                   and var.namespace_admin_principal_arns do

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  partition    = data.aws_partition.current.partition
  account_id   = data.aws_caller_identity.current.account_id
  account_root = "arn:${local.partition}:iam::${local.account_id}:root"

  log_group_name = "/aws/eks/${var.name}/cluster"
  log_group_arn  = "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:${local.log_group_name}"

  cluster_log_types = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
}

# --- Cluster role ------------------------------------------------------------------------------

data "aws_iam_policy_document" "cluster_trust" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]

    principals {
      type        = "Service"
      identifiers = ["eks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "cluster" {
  name               = "${var.name}-eks-cluster"
  description        = "${var.name} EKS control plane"
  assume_role_policy = data.aws_iam_policy_document.cluster_trust.json
}

resource "aws_iam_role_policy_attachment" "cluster" {
  role       = aws_iam_role.cluster.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonEKSClusterPolicy"
}

# --- Secrets key -------------------------------------------------------------------------------

# EKS encrypts Secrets with this key through the cluster role, and creates a grant for it with
# the credentials of whoever creates the cluster: the account's principals may create that
# grant (and describe the key) through EKS only.
data "aws_iam_policy_document" "secrets_key" {
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" is the key it is attached to: only the cluster role may Encrypt and Decrypt with it (the Secrets of its own cluster), and grants only through EKS
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" is the key it is attached to: only the cluster role may Encrypt and Decrypt with it (the Secrets of its own cluster), and grants only through EKS
  source_policy_documents = [var.key_administration_policy_json]

  statement {
    sid       = "ClusterRoleEncryptsSecrets"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey", "kms:ListGrants"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.cluster.arn]
    }
  }

  statement {
    sid       = "AccountThroughEks"
    actions   = ["kms:CreateGrant", "kms:DescribeKey"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["eks.${var.region}.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:CallerAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }
}

resource "aws_kms_key" "secrets" {
  description              = "${var.name} EKS: encrypts the cluster's Kubernetes Secrets"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  deletion_window_in_days  = var.kms_deletion_window_days
  policy                   = data.aws_iam_policy_document.secrets_key.json
}

resource "aws_kms_alias" "secrets" {
  name          = "alias/${var.name}-eks-secrets"
  target_key_id = aws_kms_key.secrets.key_id
}

# --- Control plane logs ------------------------------------------------------------------------

# CloudWatch Logs uses the key itself, under the encryption context of the control plane's log
# group only.
data "aws_iam_policy_document" "logs_key" {
  source_policy_documents = [var.key_administration_policy_json]

  statement {
    sid = "CloudWatchLogsForTheClusterLogGroup"
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
      values   = [local.log_group_arn]
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
  description              = "${var.name} EKS: encrypts the control plane's log group"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  deletion_window_in_days  = var.kms_deletion_window_days
  policy                   = data.aws_iam_policy_document.logs_key.json
}

resource "aws_kms_alias" "logs" {
  name          = "alias/${var.name}-eks-logs"
  target_key_id = aws_kms_key.logs.key_id
}

resource "aws_cloudwatch_log_group" "cluster" {
  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.logs.arn
}

# --- Cluster -----------------------------------------------------------------------------------

resource "aws_eks_cluster" "this" {
  name     = var.name
  version  = var.kubernetes_version
  role_arn = aws_iam_role.cluster.arn

  # The managed add-ons of addons.tf install vpc-cni, kube-proxy and CoreDNS; EKS does not
  # install unmanaged copies first.
  bootstrap_self_managed_addons = false

  enabled_cluster_log_types = local.cluster_log_types

  access_config {
    authentication_mode                         = "API"
    bootstrap_cluster_creator_admin_permissions = false
  }

  encryption_config {
    resources = ["secrets"]

    provider {
      key_arn = aws_kms_key.secrets.arn
    }
  }

  vpc_config {
    subnet_ids              = var.subnet_ids
    endpoint_private_access = true
    endpoint_public_access  = var.endpoint_public_access
    public_access_cidrs     = var.endpoint_public_access ? var.public_access_cidrs : null
  }

  kubernetes_network_config {
    ip_family = "ipv4"
  }

  upgrade_policy {
    support_type = var.support_type
  }

  lifecycle {
    precondition {
      condition     = !var.endpoint_public_access || (length(var.public_access_cidrs) > 0 && !contains(var.public_access_cidrs, "0.0.0.0/0"))
      error_message = "A public endpoint must be restricted: public_access_cidrs must name the networks that reach it, and not 0.0.0.0/0."
    }
  }

  depends_on = [
    aws_iam_role_policy_attachment.cluster,
    aws_cloudwatch_log_group.cluster,
  ]
}

# --- Access ------------------------------------------------------------------------------------

resource "aws_eks_access_entry" "cluster_admin" {
  for_each = toset(var.cluster_admin_principal_arns)

  cluster_name  = aws_eks_cluster.this.name
  principal_arn = each.value
  type          = "STANDARD"
}

resource "aws_eks_access_policy_association" "cluster_admin" {
  for_each = toset(var.cluster_admin_principal_arns)

  cluster_name  = aws_eks_cluster.this.name
  principal_arn = aws_eks_access_entry.cluster_admin[each.key].principal_arn
  policy_arn    = "arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"

  access_scope {
    type = "cluster"
  }
}

# Deployers (the CI deploy role of the environment, say): admin of the release's namespaces
# only, enough for helm upgrade --install of the chart there.
resource "aws_eks_access_entry" "namespace_admin" {
  for_each = var.namespace_admin_principal_arns

  cluster_name  = aws_eks_cluster.this.name
  principal_arn = each.key
  type          = "STANDARD"
}

resource "aws_eks_access_policy_association" "namespace_admin" {
  for_each = var.namespace_admin_principal_arns

  cluster_name  = aws_eks_cluster.this.name
  principal_arn = aws_eks_access_entry.namespace_admin[each.key].principal_arn
  policy_arn    = "arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSAdminPolicy"

  access_scope {
    type       = "namespace"
    namespaces = each.value
  }
}
