variable "name" {
  description = "Identifier of the primary instance (the replica is <name>-replica), and prefix of the subnet group, security groups, parameter group, keys, secret and archive bucket."
  type        = string
}

variable "region" {
  description = "AWS region of the database (the provider's region)."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the database."
  type        = string
}

variable "vpc_cidr_block" {
  description = "IPv4 range of the VPC: the rotation function reaches the Secrets Manager endpoint in it."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (at least two availability zones) of the database."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "RDS needs subnets in at least two availability zones."
  }
}

variable "client_security_group_ids" {
  description = "Further security groups allowed to reach PostgreSQL on 5432, by a name of your choice (static keys, so the plan knows the rules before the groups exist). The EKS nodes need none: they carry output client_security_group_id."
  type        = map(string)
  default     = {}
}

variable "engine_version" {
  description = "PostgreSQL version; a major version lets RDS pick and upgrade the minor one. The parameter group's family follows the major version."
  type        = string
  default     = "15"
}

variable "instance_class" {
  description = "Instance class of the primary."
  type        = string
  default     = "db.m6g.large"
}

variable "replica_instance_class" {
  description = "Instance class of the read replica; null: the primary's."
  type        = string
  default     = null
}

variable "allocated_storage" {
  description = "Initial storage in GiB."
  type        = number
  default     = 50
}

variable "max_allocated_storage" {
  description = "Storage autoscaling ceiling in GiB (primary and replica)."
  type        = number
  default     = 500
}

variable "db_name" {
  description = "Database created on the instance."
  type        = string
  default     = "fetchreward"
}

variable "master_username" {
  description = "Master user; its password is generated into the secret of secret.tf."
  type        = string
  default     = "fetchreward_admin"
}

variable "master_password_version" {
  description = "Version of the master password written by Terraform: raise it to make Terraform generate a new password and write it to both the secret and the instance (after a failed first apply, say). Rotation does not need it."
  type        = number
  default     = 1
}

variable "kms_key_arn" {
  description = "KMS key of the storage and Performance Insights; null creates one. An instance made while this was null used aws/rds: set its ARN here to keep that instance (the storage key cannot change in place)."
  type        = string
  default     = null
}

variable "monitoring_interval" {
  description = "Seconds between enhanced monitoring samples (0 turns it off; 1, 5, 10, 15, 30 or 60)."
  type        = number
  default     = 60

  validation {
    condition     = contains([0, 1, 5, 10, 15, 30, 60], var.monitoring_interval)
    error_message = "monitoring_interval must be one of 0, 1, 5, 10, 15, 30, 60."
  }
}

variable "multi_az" {
  description = "Standby of the primary in a second availability zone."
  type        = bool
  default     = true
}

variable "replica_multi_az" {
  description = "Standby of the read replica in a second availability zone, so replica reads survive the loss of a zone; false halves the replica's cost."
  type        = bool
  default     = true
}

variable "backup_retention_days" {
  description = "Automated backup retention of the primary (the chart's vault.backupRetentionDays must agree)."
  type        = number
  default     = 14
}

variable "deletion_protection" {
  description = "Refuse to delete the instances."
  type        = bool
  default     = true
}

variable "log_min_duration_ms" {
  description = "Statements running longer than this many milliseconds are logged (without their bind parameters); -1 turns it off."
  type        = number
  default     = 1000
}

variable "log_retention_days" {
  description = "Retention of the exported database logs, in days: at least a year (a value CloudWatch Logs accepts)."
  type        = number
  default     = 365

  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653."
  }
}

variable "rotation_lambda_arn" {
  description = "ARN of the function that rotates the master secret: AWS's SecretsManagerRDSPostgreSQLRotationSingleUser, deployed from the Serverless Application Repository into the private subnets with output rotation_security_group_id. Null: the secret is not rotated (yet)."
  type        = string
  default     = null

  validation {
    condition     = var.rotation_lambda_arn == null || can(regex("^arn:[^:]+:lambda:[^:]+:[0-9]{12}:function:.+$", var.rotation_lambda_arn))
    error_message = "rotation_lambda_arn must be a Lambda function ARN."
  }
}

variable "rotation_days" {
  description = "Days between rotations of the master password."
  type        = number
  default     = 30

  validation {
    condition     = var.rotation_days >= 1 && var.rotation_days <= 1000
    error_message = "rotation_days must be between 1 and 1000."
  }
}

variable "secret_recovery_window_days" {
  description = "Days a deleted master secret can still be restored (7-30)."
  type        = number
  default     = 30

  validation {
    condition     = var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30
    error_message = "secret_recovery_window_days must be between 7 and 30."
  }
}

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

# --- Archive -----------------------------------------------------------------------------------

variable "archive_bucket_name" {
  description = "Name of the archive bucket (fetchreward archive run); null: <name>-archive-<account id>-<region>. S3 bucket names are global."
  type        = string
  default     = null

  validation {
    condition     = var.archive_bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.archive_bucket_name))
    error_message = "archive_bucket_name must be 3-63 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit."
  }
}

variable "archive_glacier_ir_days" {
  description = "Days after which an archived object moves to S3 Glacier Instant Retrieval (read without a thaw; 90 days' minimum storage)."
  type        = number
  default     = 90

  validation {
    condition     = var.archive_glacier_ir_days >= 1
    error_message = "archive_glacier_ir_days must be at least 1."
  }
}

variable "archive_noncurrent_version_days" {
  description = "Days an overwritten version of an archived object is kept (a month exported again replaces its object)."
  type        = number
  default     = 30

  validation {
    condition     = var.archive_noncurrent_version_days >= 1
    error_message = "archive_noncurrent_version_days must be at least 1."
  }
}

variable "archive_object_lock_days" {
  description = "Object Lock on the archive bucket: every new version kept in governance mode for this many days. 0: no Object Lock. Once enabled, Object Lock cannot be turned off on the bucket (only its default retention changed)."
  type        = number
  default     = 0

  validation {
    condition     = var.archive_object_lock_days >= 0 && floor(var.archive_object_lock_days) == var.archive_object_lock_days
    error_message = "archive_object_lock_days must be a whole number of days, 0 (off) or more."
  }
}
