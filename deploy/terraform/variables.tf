variable "region" {
  description = "AWS region of every resource."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Name prefix of the resources (IAM roles, database, security group, parameter group)."
  type        = string
  default     = "fetchreward"
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

# --- SQS -------------------------------------------------------------------------------------

variable "queue_name" {
  description = "Source queue of login events."
  type        = string
  default     = "login-queue"
}

variable "dlq_name" {
  description = "Dead-letter queue of the source queue."
  type        = string
  default     = "login-queue-dlq"
}

variable "max_receive_count" {
  description = "Receives after which SQS moves a message to the dead-letter queue."
  type        = number
  default     = 5
}

variable "queue_visibility_timeout_seconds" {
  description = "Visibility timeout of the source queue; the ingestor extends it for slow batches."
  type        = number
  default     = 30
}

variable "queue_message_retention_seconds" {
  description = "Retention of the source queue; must stay below the DLQ's 14 days."
  type        = number
  default     = 345600

  validation {
    condition     = var.queue_message_retention_seconds >= 60 && var.queue_message_retention_seconds < 1209600
    error_message = "queue_message_retention_seconds must be at least 60 and less than 1209600 (the DLQ retention)."
  }
}

# --- KMS -------------------------------------------------------------------------------------

variable "kms_alias" {
  description = "Alias of the key that wraps the vault's keys."
  type        = string
  default     = "alias/fetchreward"
}

variable "kms_deletion_window_days" {
  description = "Waiting period before a scheduled key deletion takes effect (7-30)."
  type        = number
  default     = 30
}

# --- Network and EKS -------------------------------------------------------------------------

variable "vpc_id" {
  description = "VPC of the EKS cluster and the database."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (at least two availability zones) for the database."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "RDS needs subnets in at least two availability zones."
  }
}

variable "eks_security_group_ids" {
  description = "Security groups of the EKS nodes (or of the pods, with security groups for pods) allowed to reach PostgreSQL."
  type        = list(string)
}

variable "eks_oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider, arn:aws:iam::<account>:oidc-provider/oidc.eks.<region>.amazonaws.com/id/<id>."
  type        = string
}

variable "k8s_namespace" {
  description = "Namespace of the Helm release."
  type        = string
  default     = "fetchreward"
}

variable "k8s_service_account_prefix" {
  description = "Prefix of the service account names: the chart's full name (the release name, or <release>-fetchreward)."
  type        = string
  default     = "fetchreward"
}

# --- RDS -------------------------------------------------------------------------------------

variable "db_engine_version" {
  description = "PostgreSQL version; a major version lets RDS pick and upgrade the minor one."
  type        = string
  default     = "15"
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.m6g.large"
}

variable "db_allocated_storage" {
  description = "Initial storage in GiB."
  type        = number
  default     = 50
}

variable "db_max_allocated_storage" {
  description = "Storage autoscaling ceiling in GiB."
  type        = number
  default     = 500
}

variable "db_name" {
  description = "Database created on the instance."
  type        = string
  default     = "fetchreward"
}

variable "db_master_username" {
  description = "Master user; its password is generated and kept in Secrets Manager by RDS."
  type        = string
  default     = "fetchreward_admin"
}

variable "db_kms_key_arn" {
  description = "KMS key for storage encryption; null uses the account's aws/rds key."
  type        = string
  default     = null
}

variable "db_multi_az" {
  description = "Standby in a second availability zone."
  type        = bool
  default     = true
}

variable "db_backup_retention_days" {
  description = "Automated backup retention."
  type        = number
  default     = 14
}

variable "db_deletion_protection" {
  description = "Refuse to delete the instance."
  type        = bool
  default     = true
}
