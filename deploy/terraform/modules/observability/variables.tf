variable "name" {
  description = "Name prefix of the log groups (/<name>/<service>), the alarm topic and alarms, the keys and the Fluent Bit role."
  type        = string
}

variable "region" {
  description = "AWS region of the log groups and alarms (the provider's region)."
  type        = string
}

variable "key_administration_policy_json" {
  description = "Key policy statements that administer every key of the environment (modules/key-administration), merged into the logs and alarms keys' policies."
  type        = string
}

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
  description = "Identifier of the read replica whose ReplicaLag to alarm on (modules/data's). Empty: no alarm."
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

variable "kms_deletion_window_days" {
  description = "Waiting period before a scheduled deletion of a key of this configuration takes effect (7-30)."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

# --- Watched resources ---------------------------------------------------------------------------

variable "queue_name" {
  description = "Source queue of login events (modules/pipeline's)."
  type        = string
}

variable "dlq_name" {
  description = "Dead-letter queue of the source queue (modules/pipeline's)."
  type        = string
}

variable "dlq_retention_seconds" {
  description = "Retention of the dead-letter queue, quoted in the alarm's description."
  type        = number
}

variable "db_instance_identifier" {
  description = "Identifier of the PostgreSQL primary whose CPU, storage and connections to alarm on (modules/data's)."
  type        = string
}

variable "db_max_allocated_storage" {
  description = "Storage autoscaling ceiling of the database in GiB, quoted in the free storage alarm's description."
  type        = number
}

variable "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider, which the Fluent Bit role trusts (IRSA)."
  type        = string
}
