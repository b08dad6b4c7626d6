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
  description = "Retention of the source queue (60-1209600 s); at most dlq_retention_seconds."
  type        = number
  default     = 345600

  validation {
    condition     = var.queue_message_retention_seconds >= 60 && var.queue_message_retention_seconds <= 1209600
    error_message = "queue_message_retention_seconds must be between 60 and 1209600."
  }
}

variable "dlq_retention_seconds" {
  description = "Retention of the dead-letter queue (60-1209600 s); at least queue_message_retention_seconds, since a message moved by the redrive policy keeps its first enqueue time."
  type        = number
  default     = 345600

  validation {
    condition     = var.dlq_retention_seconds >= 60 && var.dlq_retention_seconds <= 1209600
    error_message = "dlq_retention_seconds must be between 60 and 1209600."
  }
}

variable "sqs_kms_alias" {
  description = "Alias of the key of the queues' server-side encryption."
  type        = string
  default     = "alias/fetchreward-sqs"

  validation {
    condition     = startswith(var.sqs_kms_alias, "alias/") && !startswith(var.sqs_kms_alias, "alias/aws/")
    error_message = "sqs_kms_alias must start with alias/ (and not alias/aws/)."
  }
}

variable "sqs_producer_principal_arns" {
  description = "IAM principals that send login events to the source queue; the SQS key lets them use it through SQS. They still need sqs:SendMessage in their own policies."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.sqs_producer_principal_arns : startswith(arn, "arn:")])
    error_message = "sqs_producer_principal_arns must be IAM principal ARNs."
  }
}

variable "dlq_kms_alias" {
  description = "Alias of the key that seals dead-lettered bodies (Helm: ingestor.dlqKmsKeyId)."
  type        = string
  default     = "alias/fetchreward-dlq"

  validation {
    condition     = startswith(var.dlq_kms_alias, "alias/") && !startswith(var.dlq_kms_alias, "alias/aws/")
    error_message = "dlq_kms_alias must start with alias/ (and not alias/aws/)."
  }
}

variable "triage_principal_arns" {
  description = "IAM principals that may assume <name>-dlq-triage to read, open and redrive dead letters. Empty: the role is not created and nobody can open a sealed body."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.triage_principal_arns : startswith(arn, "arn:")])
    error_message = "triage_principal_arns must be IAM principal ARNs."
  }
}

# --- KMS -------------------------------------------------------------------------------------

variable "deployment_id" {
  description = "Identifies this deployment in the vault's KMS encryption context (fetchreward:deployment) and in the tag of its generation keys, e.g. fetchreward-prod. Must equal the chart's vault.deploymentId; unique among the deployments of an account."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9._/-]{1,128}$", var.deployment_id))
    error_message = "deployment_id must be 1-128 letters, digits, -, _, . and /, e.g. fetchreward-prod (what the vault accepts in VAULT_DEPLOYMENT_ID)."
  }
}

variable "kms_alias" {
  description = "Alias of the key that wraps the vault's keys."
  type        = string
  default     = "alias/fetchreward"
}

variable "kms_deletion_window_days" {
  description = "Waiting period before a scheduled deletion of a key of this configuration takes effect (7-30)."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

variable "kms_admin_role_arns" {
  description = "IAM roles that administer the keys (key policies: administrative actions only, never Encrypt, Decrypt or GenerateDataKey). The account root is always an administrator."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.kms_admin_role_arns : can(regex("^arn:[^:]+:iam::[0-9]{12}:role/.+$", arn))])
    error_message = "kms_admin_role_arns must be IAM role ARNs (arn:<partition>:iam::<account>:role/<name>)."
  }
}

variable "vault_legacy_context_decrypt" {
  description = "Let the vault Decrypt, with the vault key, blobs whose encryption context has no fetchreward:deployment: the key rows of a vault that ran before deployment ids (legacy rows). Leave false for a new deployment."
  type        = bool
  default     = false
}

variable "generation_kms_keys" {
  description = "The vault creates one KMS key per data-key generation and schedules its deletion when the generation retires (Helm: vault.generationKmsKeys). False: the vault key wraps every data key, and the vault gets no CreateKey permission."
  type        = bool
  default     = true
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
  description = "KMS key of the database's storage and Performance Insights; null creates one. An instance made while this was null used aws/rds: set its ARN here to keep that instance (the storage key cannot change in place)."
  type        = string
  default     = null
}

variable "db_monitoring_interval" {
  description = "Seconds between enhanced monitoring samples (0 turns it off; 1, 5, 10, 15, 30 or 60)."
  type        = number
  default     = 60

  validation {
    condition     = contains([0, 1, 5, 10, 15, 30, 60], var.db_monitoring_interval)
    error_message = "db_monitoring_interval must be one of 0, 1, 5, 10, 15, 30, 60."
  }
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

# --- CloudWatch ------------------------------------------------------------------------------

variable "log_retention_days" {
  description = "Retention of the services' log groups /<name>/vault, /<name>/writer and /<name>/ingestor, in days (a value CloudWatch Logs accepts; 0 keeps them forever)."
  type        = number
  default     = 30

  validation {
    condition     = contains([0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of 0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653."
  }
}

variable "alarm_subscriptions" {
  description = "Subscriptions of the alarm topic <name>-alarms, e.g. [{ protocol = \"email\", endpoint = \"oncall@example.com\" }]. Empty: subscribe elsewhere (output alarm_topic_arn)."
  type = list(object({
    protocol = string
    endpoint = string
  }))
  default = []

  validation {
    condition     = alltrue([for s in var.alarm_subscriptions : contains(["email", "email-json", "http", "https", "sqs", "lambda", "sms", "application", "firehose"], s.protocol)])
    error_message = "alarm_subscriptions protocols must be email, email-json, http, https, sqs, lambda, sms, application or firehose."
  }
}

variable "queue_oldest_message_alarm_seconds" {
  description = "Alarm when the oldest message of the source queue (ApproximateAgeOfOldestMessage) is older than this for 5 minutes."
  type        = number
  default     = 300
}

variable "db_cpu_alarm_percent" {
  description = "Alarm when the database's CPUUtilization averages over this for 15 minutes."
  type        = number
  default     = 80
}

variable "db_free_storage_alarm_gib" {
  description = "Alarm when the database's FreeStorageSpace stays under this many GiB for 15 minutes."
  type        = number
  default     = 5
}

variable "db_connections_alarm_count" {
  description = "Alarm when the database holds more connections than this for 15 minutes. The services' pools open at most (vault + writer replicas) x DATABASE_POOL_SIZE: 40 with the chart's defaults, 120 at their autoscaling maximum."
  type        = number
  default     = 200
}

variable "db_replica_identifier" {
  description = "Identifier of a read replica of the database made outside this configuration, whose ReplicaLag to alarm on. Empty: no replica, no alarm."
  type        = string
  default     = ""
}

variable "db_replica_lag_alarm_seconds" {
  description = "Alarm when the read replica (db_replica_identifier) lags more than this for 15 minutes."
  type        = number
  default     = 60
}

variable "fluent_bit_namespace" {
  description = "Namespace of the aws-for-fluent-bit release (deploy/fluent-bit) whose service account assumes <name>-fluent-bit."
  type        = string
  default     = "kube-system"
}

variable "fluent_bit_service_account" {
  description = "Service account of the aws-for-fluent-bit DaemonSet (the chart's full name: aws-for-fluent-bit for a release of that name)."
  type        = string
  default     = "aws-for-fluent-bit"
}

variable "opensearch_domain_arn" {
  description = "ARN of an Amazon OpenSearch Service domain Fluent Bit also ships the logs to (deploy/fluent-bit, opensearch.enabled); null: none, and the role gets no es: permission."
  type        = string
  default     = null

  validation {
    condition     = var.opensearch_domain_arn == null || can(regex("^arn:[^:]+:es:[^:]+:[0-9]{12}:domain/[a-z][a-z0-9-]{2,27}$", var.opensearch_domain_arn))
    error_message = "opensearch_domain_arn must be an OpenSearch domain ARN, arn:<partition>:es:<region>:<account>:domain/<name>."
  }
}
