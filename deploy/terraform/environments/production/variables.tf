variable "region" {
  description = "AWS region of every resource."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Name of the environment's resources: the EKS cluster and the database instance, and the prefix of the VPC, roles, keys, log groups and alarms."
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
  description = "Waiting period before a scheduled deletion of a key of this environment takes effect (7-30)."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

variable "kms_admin_role_arns" {
  description = "IAM roles that administer every key of the environment (key policies: administrative actions only, never Encrypt, Decrypt or GenerateDataKey). The account root is always an administrator."
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

# --- Kubernetes namespace of the release --------------------------------------------------------

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

# --- Network ---------------------------------------------------------------------------------

variable "vpc_cidr_block" {
  description = "IPv4 range of the VPC (/16 to /20): a /19 per private subnet and a /22 per public subnet at a /16."
  type        = string
  default     = "10.0.0.0/16"
}

variable "availability_zones" {
  description = "The three availability zones of the subnets (zones of region). Named rather than discovered, so a zone AWS adds never moves a subnet; changing one replaces that zone's subnets and what runs in them."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b", "us-east-1c"]
}

variable "single_nat_gateway" {
  description = "One NAT gateway for the VPC instead of one per availability zone (cheaper; the zone holding it then carries every zone's outbound traffic)."
  type        = bool
  default     = false
}

variable "interface_endpoint_services" {
  description = "Services with an interface VPC endpoint in the private subnets (com.amazonaws.<region>.<service>); the S3 gateway endpoint is always there."
  type        = list(string)
  default     = ["sqs", "kms", "sts", "ecr.api", "ecr.dkr", "logs", "secretsmanager"]
}

variable "flow_log_retention_days" {
  description = "Retention of the VPC flow logs in days, at least 365."
  type        = number
  default     = 365
}

# --- EKS ---------------------------------------------------------------------------------------

variable "kubernetes_version" {
  description = "Kubernetes version of the EKS cluster (one minor version at a time when upgrading)."
  type        = string
  default     = "1.35"
}

variable "cluster_support_type" {
  description = "EKS upgrade policy: STANDARD (EKS upgrades the control plane when standard support ends) or EXTENDED (at extra cost)."
  type        = string
  default     = "STANDARD"
}

variable "cluster_endpoint_public_access" {
  description = "Expose the Kubernetes API publicly as well, to cluster_public_access_cidrs only. False: from inside the VPC (and networks connected to it) only."
  type        = bool
  default     = false
}

variable "cluster_public_access_cidrs" {
  description = "Networks allowed to reach the public Kubernetes API when cluster_endpoint_public_access (never 0.0.0.0/0)."
  type        = list(string)
  default     = []
}

variable "cluster_admin_principal_arns" {
  description = "IAM principals with cluster-wide admin (EKS access entries, AmazonEKSClusterAdminPolicy). The principal that applies this configuration gets no implicit access."
  type        = list(string)
  default     = []
}

variable "cluster_deploy_principal_arns" {
  description = "IAM principals (the CI deploy role of the environment) with AmazonEKSAdminPolicy in k8s_namespace only: enough to helm upgrade --install the chart."
  type        = list(string)
  default     = []
}

variable "cluster_log_retention_days" {
  description = "Retention of the control plane's log group /aws/eks/<name>/cluster in days, at least 365."
  type        = number
  default     = 365
}

variable "cluster_addon_versions" {
  description = "Add-on versions to pin (vpc-cni, kube-proxy, eks-pod-identity-agent, coredns, aws-ebs-csi-driver); the others get EKS's default for the Kubernetes version."
  type        = map(string)
  default     = {}
}

variable "node_ami_type" {
  description = "AMI type of the managed node group (EKS-optimized Amazon Linux 2023)."
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
  description = "Nodes at creation (later changes by an autoscaler or an operator are left alone)."
  type        = number
  default     = 3
}

variable "node_max_size" {
  description = "Most nodes."
  type        = number
  default     = 6
}

variable "node_disk_size_gib" {
  description = "Root volume of each node in GiB."
  type        = number
  default     = 50
}

# --- ECR ---------------------------------------------------------------------------------------

variable "ecr_repository_name" {
  description = "Image repository (the release workflow's ECR_REPOSITORY)."
  type        = string
  default     = "fetchreward"
}

variable "ecr_mutable_tags" {
  description = "Tags exempt from tag immutability: the BuildKit cache tag that .github/workflows/release.yml overwrites. [] makes every tag immutable."
  type        = list(string)
  default     = ["buildcache"]
}

variable "ecr_keep_tagged_images" {
  description = "Tagged images kept (the newest); more than the releases a rollback may return to."
  type        = number
  default     = 50
}

variable "ecr_untagged_expiry_days" {
  description = "Days after which an untagged image is expired."
  type        = number
  default     = 7
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
  description = "Storage autoscaling ceiling in GiB (primary and replica)."
  type        = number
  default     = 500
}

variable "db_name" {
  description = "Database created on the instance."
  type        = string
  default     = "fetchreward"
}

variable "db_master_username" {
  description = "Master user; its password is generated into the Secrets Manager secret <name>/rds/master (output db_master_user_secret_arn)."
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
  description = "Standby of the primary in a second availability zone."
  type        = bool
  default     = true
}

variable "db_backup_retention_days" {
  description = "Automated backup retention of the primary (chart vault.backupRetentionDays)."
  type        = number
  default     = 14
}

variable "db_deletion_protection" {
  description = "Refuse to delete the primary and the replica."
  type        = bool
  default     = true
}

variable "db_replica_instance_class" {
  description = "Instance class of the read replica <name>-replica; null: db_instance_class."
  type        = string
  default     = null
}

variable "db_replica_multi_az" {
  description = "Standby of the read replica in a second availability zone; false halves its cost, and replica reads then stop while RDS replaces it after the loss of its zone."
  type        = bool
  default     = true
}

variable "db_master_password_version" {
  description = "Raise it to have Terraform generate a new master password into the secret and the instance (rotation does not need it)."
  type        = number
  default     = 1
}

variable "db_rotation_lambda_arn" {
  description = "ARN of the rotation function of the master secret (SecretsManagerRDSPostgreSQLRotationSingleUser from the Serverless Application Repository, README \"Master password rotation\"). Null: not rotated yet."
  type        = string
  default     = null
}

variable "db_rotation_days" {
  description = "Days between rotations of the master password."
  type        = number
  default     = 30
}

variable "db_secret_recovery_window_days" {
  description = "Days a deleted master secret can still be restored (7-30)."
  type        = number
  default     = 30
}

variable "db_log_min_duration_ms" {
  description = "Statements slower than this many milliseconds are logged (without bind parameters); -1 turns it off."
  type        = number
  default     = 1000
}

variable "db_log_retention_days" {
  description = "Retention of the exported database logs in days, at least 365."
  type        = number
  default     = 365
}

# --- CloudWatch ------------------------------------------------------------------------------

# --- Archive -------------------------------------------------------------------------------

variable "archive_bucket_name" {
  description = "Bucket of the user_logins archive (fetchreward archive run); null: <name>-archive-<account id>-<region>."
  type        = string
  default     = null
}

variable "archive_prefix" {
  description = "Key prefix of the archive in the bucket: the job writes under <prefix>/user_logins/ (Helm: archive.url = s3://<bucket>/<prefix>)."
  type        = string
  default     = "archive"
}

variable "archive_glacier_ir_days" {
  description = "Days after which an archived object moves to S3 Glacier Instant Retrieval."
  type        = number
  default     = 90
}

variable "archive_noncurrent_version_days" {
  description = "Days an overwritten version of an archived object is kept."
  type        = number
  default     = 30
}

variable "archive_object_lock_days" {
  description = "Object Lock (governance mode) of every new archived version for this many days; 0: off. Irreversible on the bucket once on."
  type        = number
  default     = 0
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

variable "db_replica_lag_alarm_seconds" {
  description = "Alarm when the read replica <name>-replica lags more than this for 15 minutes."
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
