# EKS managed add-ons. The cluster starts without any (bootstrap_self_managed_addons = false):
#
#   before the nodes  vpc-cni (NetworkPolicy enforcement on: the chart's NetworkPolicies are
#                     enforced by its node agent), kube-proxy, eks-pod-identity-agent; all
#                     DaemonSets, healthy with no node yet, and needed for a node to be Ready
#   after the nodes   coredns and aws-ebs-csi-driver, Deployments that need a node to run on
#
# vpc-cni and the EBS CSI controller get AWS credentials through IRSA roles of their own
# (identity.tf's OIDC provider), so the node role needs neither's permissions. Versions: the
# default version of each add-on for the cluster's Kubernetes version, unless var.addon_versions
# pins one.

locals {
  addons_before_nodes = {
    vpc-cni = {
      service_account_role_arn = aws_iam_role.addon["vpc-cni"].arn
      configuration_values     = jsonencode({ enableNetworkPolicy = "true" })
    }
    kube-proxy = {
      service_account_role_arn = null
      configuration_values     = null
    }
    eks-pod-identity-agent = {
      service_account_role_arn = null
      configuration_values     = null
    }
  }

  addons_after_nodes = {
    coredns = {
      service_account_role_arn = null
      configuration_values     = null
    }
    aws-ebs-csi-driver = {
      service_account_role_arn = aws_iam_role.addon["aws-ebs-csi-driver"].arn
      configuration_values     = null
    }
  }

  # The add-ons with an IRSA role: their service account and the AWS managed policy it needs.
  addon_roles = {
    vpc-cni = {
      service_account = "aws-node"
      policy          = "AmazonEKS_CNI_Policy"
    }
    aws-ebs-csi-driver = {
      service_account = "ebs-csi-controller-sa"
      policy          = "service-role/AmazonEBSCSIDriverPolicy"
    }
  }
}

data "aws_iam_policy_document" "addon_trust" {
  for_each = local.addon_roles

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.this.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:kube-system:${each.value.service_account}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "addon" {
  for_each = local.addon_roles

  name               = "${var.name}-eks-${each.key}"
  description        = "${var.name} EKS add-on ${each.key} (IRSA: kube-system/${each.value.service_account})"
  assume_role_policy = data.aws_iam_policy_document.addon_trust[each.key].json
}

resource "aws_iam_role_policy_attachment" "addon" {
  for_each = local.addon_roles

  role       = aws_iam_role.addon[each.key].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/${each.value.policy}"
}

resource "aws_eks_addon" "before_nodes" {
  for_each = local.addons_before_nodes

  cluster_name                = aws_eks_cluster.this.name
  addon_name                  = each.key
  addon_version               = lookup(var.addon_versions, each.key, null)
  service_account_role_arn    = each.value.service_account_role_arn
  configuration_values        = each.value.configuration_values
  resolve_conflicts_on_create = "OVERWRITE"
  resolve_conflicts_on_update = "OVERWRITE"

  depends_on = [aws_iam_role_policy_attachment.addon]
}

resource "aws_eks_addon" "after_nodes" {
  for_each = local.addons_after_nodes

  cluster_name                = aws_eks_cluster.this.name
  addon_name                  = each.key
  addon_version               = lookup(var.addon_versions, each.key, null)
  service_account_role_arn    = each.value.service_account_role_arn
  configuration_values        = each.value.configuration_values
  resolve_conflicts_on_create = "OVERWRITE"
  resolve_conflicts_on_update = "OVERWRITE"

  depends_on = [
    aws_eks_node_group.this,
    aws_iam_role_policy_attachment.addon,
  ]
}
