variable "name" {
  description = "Name of the EKS cluster, and prefix of its roles, keys and launch template."
  type        = string
}

variable "region" {
  description = "AWS region of the cluster (the provider's region)."
  type        = string
}

variable "kubernetes_version" {
  description = "Kubernetes version of the control plane (and, through the node group's AMI, of the nodes), e.g. 1.35. Upgrade one minor version at a time."
  type        = string
  default     = "1.35"

  validation {
    condition     = can(regex("^1\\.[0-9]{2}$", var.kubernetes_version))
    error_message = "kubernetes_version must be a minor version such as 1.35."
  }
}

variable "support_type" {
  description = "EKS upgrade policy: STANDARD (EKS upgrades the control plane when standard support ends) or EXTENDED (extended support, at extra cost)."
  type        = string
  default     = "STANDARD"

  validation {
    condition     = contains(["STANDARD", "EXTENDED"], var.support_type)
    error_message = "support_type must be STANDARD or EXTENDED."
  }
}

variable "subnet_ids" {
  description = "Private subnets (three availability zones) of the control plane's network interfaces and of the nodes."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "EKS needs subnets in at least two availability zones."
  }
}

variable "endpoint_public_access" {
  description = "Expose the Kubernetes API endpoint publicly as well, restricted to public_access_cidrs. False: only from inside the VPC (and networks connected to it)."
  type        = bool
  default     = false
}

variable "public_access_cidrs" {
  description = "Networks allowed to reach the public API endpoint when endpoint_public_access (never 0.0.0.0/0)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for cidr in var.public_access_cidrs : can(cidrnetmask(cidr)) && cidr != "0.0.0.0/0"])
    error_message = "public_access_cidrs must be IPv4 CIDRs other than 0.0.0.0/0."
  }
}

variable "cluster_admin_principal_arns" {
  description = "IAM principals given cluster-wide admin (AmazonEKSClusterAdminPolicy) through EKS access entries. The cluster's creator gets nothing implicitly."
  type        = list(string)
  default     = []
}

variable "namespace_admin_principal_arns" {
  description = "IAM principals (e.g. the CI deploy role of the environment) given AmazonEKSAdminPolicy in the listed namespaces only: principal ARN => namespaces."
  type        = map(list(string))
  default     = {}
}

variable "log_retention_days" {
  description = "Retention of the control plane's log group, in days: at least a year (a value CloudWatch Logs accepts)."
  type        = number
  default     = 365

  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653."
  }
}

variable "addon_versions" {
  description = "Versions pinned per add-on (vpc-cni, kube-proxy, eks-pod-identity-agent, coredns, aws-ebs-csi-driver); an add-on not named gets EKS's default version for the cluster's Kubernetes version."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for addon in keys(var.addon_versions) : contains(["vpc-cni", "kube-proxy", "eks-pod-identity-agent", "coredns", "aws-ebs-csi-driver"], addon)])
    error_message = "addon_versions may name vpc-cni, kube-proxy, eks-pod-identity-agent, coredns and aws-ebs-csi-driver only."
  }
}

# --- Nodes -------------------------------------------------------------------------------------

variable "node_ami_type" {
  description = "AMI type of the managed node group (an EKS-optimized Amazon Linux 2023 type; the image is built for x86_64 by the release workflow)."
  type        = string
  default     = "AL2023_x86_64_STANDARD"
}

variable "node_instance_types" {
  description = "Instance types of the node group, in order of preference."
  type        = list(string)
  default     = ["m7i.large"]
}

variable "node_min_size" {
  description = "Fewest nodes."
  type        = number
  default     = 3
}

variable "node_desired_size" {
  description = "Nodes at creation; later moved by an autoscaler or an operator (Terraform ignores its changes)."
  type        = number
  default     = 3
}

variable "node_max_size" {
  description = "Most nodes."
  type        = number
  default     = 6
}

variable "node_security_group_ids" {
  description = "Security groups the nodes carry besides the cluster security group, e.g. the database's clients group (modules/data client_security_group_id)."
  type        = list(string)
  default     = []
}

variable "node_disk_size_gib" {
  description = "Size of each node's root volume in GiB (gp3, encrypted with the EBS key)."
  type        = number
  default     = 50
}

# --- ECR ---------------------------------------------------------------------------------------

variable "ecr_repository_name" {
  description = "Name of the image repository (the release workflow's ECR_REPOSITORY)."
  type        = string
  default     = "fetchreward"
}

variable "ecr_mutable_tags" {
  description = "Tags (exact, or ECR wildcards) exempt from tag immutability. The default is the BuildKit cache tag the release workflow overwrites; [] makes every tag immutable."
  type        = list(string)
  default     = ["buildcache"]

  validation {
    condition     = length(var.ecr_mutable_tags) <= 5
    error_message = "ECR allows at most five tag mutability exclusion filters."
  }
}

variable "ecr_keep_tagged_images" {
  description = "Tagged images kept (the newest); older ones are expired."
  type        = number
  default     = 50
}

variable "ecr_untagged_expiry_days" {
  description = "Days after which an untagged image is expired."
  type        = number
  default     = 7
}

# --- KMS ---------------------------------------------------------------------------------------

variable "key_administration_policy_json" {
  description = "Key policy statements that administer every key of the environment (modules/key-administration), merged into the policies of this module's keys."
  type        = string
}

variable "kms_deletion_window_days" {
  description = "Waiting period before a scheduled deletion of a key of this module takes effect (7-30)."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}
