variable "name" {
  description = "Name prefix of the network's resources (VPC, subnets, gateways, endpoints, flow logs)."
  type        = string
}

variable "region" {
  description = "AWS region of the VPC (the provider's region)."
  type        = string
}

variable "cidr_block" {
  description = "IPv4 range of the VPC, /16 to /20: a /19 per private subnet and a /22 per public subnet at a /16."
  type        = string
  default     = "10.0.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.cidr_block)) && tonumber(split("/", var.cidr_block)[1]) >= 16 && tonumber(split("/", var.cidr_block)[1]) <= 20
    error_message = "cidr_block must be an IPv4 CIDR between /16 and /20."
  }
}

variable "availability_zones" {
  description = "The three availability zones of the subnets, e.g. [\"us-east-1a\", \"us-east-1b\", \"us-east-1c\"]. Changing one replaces that zone's subnets and everything in them."
  type        = list(string)

  validation {
    condition     = length(distinct(var.availability_zones)) == 3
    error_message = "availability_zones must name three different zones."
  }

  validation {
    condition     = alltrue([for az in var.availability_zones : startswith(az, var.region)])
    error_message = "availability_zones must be zones of the region (names starting with region)."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for the whole VPC instead of one per availability zone: cheaper, but losing its zone cuts every zone's outbound traffic."
  type        = bool
  default     = false
}

variable "cluster_name" {
  description = "EKS cluster whose load balancers use these subnets (tag kubernetes.io/cluster/<name> = shared); null: no cluster tag."
  type        = string
  default     = null
}

variable "interface_endpoint_services" {
  description = "Services with an interface VPC endpoint in the private subnets (com.amazonaws.<region>.<service>). Add eks-auth for EKS Pod Identity without a NAT gateway, ec2 and elasticloadbalancing for the load balancer controller."
  type        = list(string)
  default     = ["sqs", "kms", "sts", "ecr.api", "ecr.dkr", "logs", "secretsmanager"]
}

variable "flow_log_retention_days" {
  description = "Retention of the VPC flow logs, in days: at least a year (a value CloudWatch Logs accepts)."
  type        = number
  default     = 365

  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.flow_log_retention_days)
    error_message = "flow_log_retention_days must be one of 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653."
  }
}

variable "flow_log_traffic_type" {
  description = "Flows recorded: ALL, ACCEPT or REJECT."
  type        = string
  default     = "ALL"

  validation {
    condition     = contains(["ALL", "ACCEPT", "REJECT"], var.flow_log_traffic_type)
    error_message = "flow_log_traffic_type must be ALL, ACCEPT or REJECT."
  }
}

variable "key_administration_policy_json" {
  description = "Key policy statements that administer every key of the environment (modules/key-administration), merged into the flow logs key's policy."
  type        = string
}

variable "kms_deletion_window_days" {
  description = "Waiting period before a scheduled deletion of the flow logs key takes effect (7-30)."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}
