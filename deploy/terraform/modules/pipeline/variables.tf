variable "region" {
  description = "AWS region of the queues and keys (the provider's region)."
  type        = string
}

variable "name" {
  description = "Name prefix of the IAM roles (<name>-ingestor, <name>-vault, <name>-writer, <name>-archive, <name>-dlq-triage)."
  type        = string
}

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

# --- Archive ---------------------------------------------------------------------------------

variable "archive_bucket_arn" {
  description = "ARN of the archive bucket (modules/data): the archive job's role writes, reads and lists <archive_prefix>/user_logins/ in it."
  type        = string

  validation {
    condition     = can(regex("^arn:[^:]+:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.archive_bucket_arn))
    error_message = "archive_bucket_arn must be an S3 bucket ARN, arn:<partition>:s3:::<bucket>."
  }
}

variable "archive_kms_key_arn" {
  description = "Key of the archive bucket's SSE-KMS (modules/data): the archive job's role may GenerateDataKey and Decrypt with it through S3."
  type        = string
}

variable "archive_prefix" {
  description = "Key prefix of the archive in the bucket (the PREFIX of fetchreward archive run --to s3://BUCKET/PREFIX): no slash at either end."
  type        = string
  default     = "archive"

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.*'()=-]+(/[A-Za-z0-9!_.*'()=-]+)*$", var.archive_prefix))
    error_message = "archive_prefix must be one or more path segments of letters, digits and !_.*'()=- separated by single slashes, with no slash at either end."
  }
}

# --- Cluster identity ----------------------------------------------------------------------------

variable "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider (IRSA), arn:aws:iam::<account>:oidc-provider/oidc.eks.<region>.amazonaws.com/id/<id>."
  type        = string
}

variable "cluster_name" {
  description = "Name of the EKS cluster whose pod identity associations bind the service accounts to their roles."
  type        = string
}

variable "cluster_arn" {
  description = "ARN of the EKS cluster whose pod identity associations may assume the service roles (session tag eks-cluster-arn)."
  type        = string
}

# --- Keys of the environment -----------------------------------------------------------------------

variable "key_administration_policy_json" {
  description = "Key policy statements that administer every key of the environment (modules/key-administration), merged into the policies of this module's keys and of the generation keys."
  type        = string
}

variable "protected_kms_key_arns" {
  description = "The environment's other KMS keys (network, cluster, database, logs, alarms): the vault is denied tagging, untagging and scheduling the deletion of any of them, as of its own keys."
  type        = list(string)
  default     = []
}
