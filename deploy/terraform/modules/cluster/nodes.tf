# The managed node group: EKS-optimized Amazon Linux 2023 nodes in the private subnets, from a
# launch template that
#
#   requires IMDSv2 with a hop limit of 1, so pods (which get AWS credentials through IRSA or
#   EKS Pod Identity) cannot reach the instance metadata service and the node role's
#   credentials; add-ons that need it run on the host network;
#   encrypts the root volume with a key of the cluster (the EBS key).
#
# The nodes carry the cluster security group (which EKS would attach by itself to a launch
# template naming none, and which lets nodes and control plane talk) and var.node_security_group_ids
# (the database's clients group: the database admits its members on 5432). The VPC CNI gives
# pods the groups of their node. The node role has no CNI permissions: the vpc-cni add-on has
# its own role (addons.tf).

# --- Node role ---------------------------------------------------------------------------------

data "aws_iam_policy_document" "node_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  name               = "${var.name}-eks-node"
  description        = "${var.name} EKS nodes: join the cluster, pull images"
  assume_role_policy = data.aws_iam_policy_document.node_trust.json
}

resource "aws_iam_role_policy_attachment" "node" {
  for_each = toset([
    "AmazonEKSWorkerNodePolicy",
    "AmazonEC2ContainerRegistryReadOnly",
  ])

  role       = aws_iam_role.node.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/${each.value}"
}

# --- EBS key -----------------------------------------------------------------------------------

# As the AWS-managed aws/ebs key: any principal of the account may use it, through EC2 only.
# That includes the Auto Scaling service-linked role that launches the nodes (which a key policy
# could not name before the role exists) and the EBS CSI driver, for volumes of a StorageClass
# naming this key (output ebs_kms_key_arn).
data "aws_iam_policy_document" "ebs_key" {
  source_policy_documents = [var.key_administration_policy_json]

  statement {
    sid = "AccountThroughEc2"
    actions = [
      "kms:Encrypt",
      "kms:Decrypt",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:CreateGrant",
      "kms:DescribeKey",
    ]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["ec2.${var.region}.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:CallerAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_kms_key" "ebs" {
  description              = "${var.name} EKS: encrypts the nodes' volumes"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  deletion_window_in_days  = var.kms_deletion_window_days
  policy                   = data.aws_iam_policy_document.ebs_key.json
}

resource "aws_kms_alias" "ebs" {
  name          = "alias/${var.name}-ebs"
  target_key_id = aws_kms_key.ebs.key_id
}

# --- Launch template and node group ------------------------------------------------------------

resource "aws_launch_template" "node" {
  name_prefix            = "${var.name}-node-"
  description            = "${var.name} EKS nodes: IMDSv2 only, encrypted root volume"
  update_default_version = true

  vpc_security_group_ids = concat(
    [aws_eks_cluster.this.vpc_config[0].cluster_security_group_id],
    var.node_security_group_ids,
  )

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = "/dev/xvda"

    ebs {
      volume_size           = var.node_disk_size_gib
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = aws_kms_key.ebs.arn
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "instance"
    tags          = { Name = "${var.name}-node" }
  }

  tag_specifications {
    resource_type = "volume"
    tags          = { Name = "${var.name}-node" }
  }
}

resource "aws_eks_node_group" "this" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "${var.name}-default"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = var.subnet_ids

  ami_type       = var.node_ami_type
  capacity_type  = "ON_DEMAND"
  instance_types = var.node_instance_types

  scaling_config {
    min_size     = var.node_min_size
    desired_size = var.node_desired_size
    max_size     = var.node_max_size
  }

  update_config {
    max_unavailable = 1
  }

  launch_template {
    id      = aws_launch_template.node.id
    version = aws_launch_template.node.latest_version
  }

  lifecycle {
    # A cluster autoscaler (or an operator) moves the desired size within min and max.
    ignore_changes = [scaling_config[0].desired_size]

    precondition {
      condition     = var.node_min_size <= var.node_desired_size && var.node_desired_size <= var.node_max_size
      error_message = "node_min_size <= node_desired_size <= node_max_size must hold."
    }
  }

  # The networking add-ons first: a node is Ready only once vpc-cni runs on it.
  depends_on = [
    aws_iam_role_policy_attachment.node,
    aws_eks_addon.before_nodes,
  ]
}
