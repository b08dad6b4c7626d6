# What the chart, the CI workflows and the operators need (README.md, "Outputs and the chart").
# helm_values gathers the chart's values in one object:
#   terraform output -json helm_values > values-terraform.json   (JSON is YAML: helm -f reads it)

locals {
  archive_url = "s3://${module.data.archive_bucket_name}/${var.archive_prefix}"
}

output "helm_values" {
  description = "The chart values this environment determines, as the chart's values tree (helm upgrade -f); the generation key policy included."
  value = {
    common = {
      awsRegion = var.region
    }
    image = {
      repository = module.cluster.ecr_repository_url
    }
    ingestor = {
      queueUrl       = module.pipeline.queue_url
      dlqUrl         = module.pipeline.dlq_url
      dlqKmsKeyId    = module.pipeline.dlq_kms_key_arn
      serviceAccount = { roleArn = module.pipeline.ingestor_role_arn }
    }
    vault = {
      kmsKeyId            = module.pipeline.kms_key_arn
      deploymentId        = module.pipeline.deployment_id
      generationKmsKeys   = module.pipeline.generation_kms_keys
      generationKeyPolicy = module.pipeline.generation_key_policy_json != null ? module.pipeline.generation_key_policy_json : ""
      backupRetentionDays = var.db_backup_retention_days
      serviceAccount      = { roleArn = module.pipeline.vault_role_arn }
    }
    writer = {
      serviceAccount = { roleArn = module.pipeline.writer_role_arn }
    }
    # The target and the role only: values-production.yaml turns the CronJob on.
    archive = {
      url            = local.archive_url
      serviceAccount = { roleArn = module.pipeline.archive_role_arn }
    }
    networkPolicy = {
      egress = {
        # The database and the interface endpoints both live in the private subnets.
        database = { cidrs = module.network.private_subnet_cidrs }
        aws      = { cidrs = module.network.private_subnet_cidrs }
        # S3 through the gateway endpoint: the region's S3 ranges (the archive job).
        s3 = { cidrs = module.network.s3_cidr_blocks }
      }
    }
  }
}

output "region" {
  description = "AWS region of the environment (Helm: common.awsRegion)."
  value       = var.region
}

# --- Queues and keys ---------------------------------------------------------------------------

output "queue_url" {
  description = "URL of login-queue (Helm: ingestor.queueUrl)."
  value       = module.pipeline.queue_url
}

output "queue_arn" {
  description = "ARN of login-queue."
  value       = module.pipeline.queue_arn
}

output "dlq_url" {
  description = "URL of login-queue-dlq (Helm: ingestor.dlqUrl)."
  value       = module.pipeline.dlq_url
}

output "dlq_arn" {
  description = "ARN of login-queue-dlq."
  value       = module.pipeline.dlq_arn
}

output "kms_key_arn" {
  description = "ARN of the vault key (Helm: vault.kmsKeyId)."
  value       = module.pipeline.kms_key_arn
}

output "kms_alias" {
  description = "Alias of the vault key."
  value       = module.pipeline.kms_alias
}

output "deployment_id" {
  description = "The deployment id pinned in the key policies (Helm: vault.deploymentId)."
  value       = module.pipeline.deployment_id
}

output "generation_key_policy_json" {
  description = "Key policy of the keys the vault creates per data-key generation (Helm: vault.generationKeyPolicy); null when generation_kms_keys is false."
  value       = module.pipeline.generation_key_policy_json
}

output "sqs_kms_key_arn" {
  description = "ARN of the key of the queues' server-side encryption; producers need GenerateDataKey and Decrypt on it through SQS (sqs_producer_principal_arns)."
  value       = module.pipeline.sqs_kms_key_arn
}

output "dlq_kms_key_arn" {
  description = "ARN of the key that seals dead-lettered bodies (Helm: ingestor.dlqKmsKeyId)."
  value       = module.pipeline.dlq_kms_key_arn
}

output "dlq_kms_alias" {
  description = "Alias of the DLQ key (Helm: ingestor.dlqKmsKeyId accepts it as well)."
  value       = module.pipeline.dlq_kms_alias
}

# --- Identities --------------------------------------------------------------------------------

output "k8s_namespace" {
  description = "Namespace of the Helm release, which the service roles trust."
  value       = module.pipeline.k8s_namespace
}

output "service_accounts" {
  description = "Service account of each service and of the archive job (fetchreward-ingestor, fetchreward-vault, fetchreward-writer, fetchreward-archive with the default prefix): what the chart names them, what the roles trust and the pod identity associations bind."
  value       = module.pipeline.service_accounts
}

output "ingestor_role_arn" {
  description = "Role of the ingestor, through IRSA or EKS Pod Identity (Helm: ingestor.serviceAccount.roleArn)."
  value       = module.pipeline.ingestor_role_arn
}

output "vault_role_arn" {
  description = "Role of the vault, through IRSA or EKS Pod Identity (Helm: vault.serviceAccount.roleArn)."
  value       = module.pipeline.vault_role_arn
}

output "writer_role_arn" {
  description = "Role of the writer, without permissions (Helm: writer.serviceAccount.roleArn)."
  value       = module.pipeline.writer_role_arn
}

output "triage_role_arn" {
  description = "Role that reads, opens and redrives dead letters; null when triage_principal_arns is empty."
  value       = module.pipeline.triage_role_arn
}

output "archive_role_arn" {
  description = "Role of the archive job, through IRSA or EKS Pod Identity (Helm: archive.serviceAccount.roleArn)."
  value       = module.pipeline.archive_role_arn
}

output "fluent_bit_role_arn" {
  description = "IRSA role of the Fluent Bit DaemonSet (aws-for-fluent-bit: serviceAccount.annotations.eks.amazonaws.com/role-arn)."
  value       = module.observability.fluent_bit_role_arn
}

# --- Cluster and images ------------------------------------------------------------------------

output "cluster_name" {
  description = "Name of the EKS cluster (aws eks update-kubeconfig --name; the deploy workflow's EKS_CLUSTER_NAME)."
  value       = module.cluster.cluster_name
}

output "cluster_arn" {
  description = "ARN of the EKS cluster."
  value       = module.cluster.cluster_arn
}

output "cluster_endpoint" {
  description = "URL of the Kubernetes API (private unless cluster_endpoint_public_access)."
  value       = module.cluster.cluster_endpoint
}

output "cluster_security_group_id" {
  description = "The cluster security group, on every node: the database admits it on 5432."
  value       = module.cluster.cluster_security_group_id
}

output "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider (IRSA)."
  value       = module.cluster.oidc_provider_arn
}

output "ecr_repository_url" {
  description = "Image repository, <account>.dkr.ecr.<region>.amazonaws.com/fetchreward (Helm: image.repository)."
  value       = module.cluster.ecr_repository_url
}

output "ecr_repository_arn" {
  description = "ARN of the image repository (the CI push role's policy)."
  value       = module.cluster.ecr_repository_arn
}

output "ebs_kms_key_arn" {
  description = "Key of the nodes' volumes, usable by an EBS CSI StorageClass (parameters.kmsKeyId)."
  value       = module.cluster.ebs_kms_key_arn
}

# --- Network -----------------------------------------------------------------------------------

output "vpc_id" {
  description = "ID of the VPC."
  value       = module.network.vpc_id
}

output "private_subnet_ids" {
  description = "Private subnets (nodes, database, endpoints; the rotation function's vpcSubnetIds)."
  value       = module.network.private_subnet_ids
}

output "private_subnet_cidrs" {
  description = "IPv4 ranges of the private subnets (Helm: networkPolicy.egress.database.cidrs and networkPolicy.egress.aws.cidrs)."
  value       = module.network.private_subnet_cidrs
}

output "s3_cidr_blocks" {
  description = "IPv4 ranges of S3 in the region, routed through the S3 gateway endpoint (Helm: networkPolicy.egress.s3.cidrs)."
  value       = module.network.s3_cidr_blocks
}

output "nat_public_ips" {
  description = "Addresses the private subnets' outbound traffic comes from (for allow-lists elsewhere)."
  value       = module.network.nat_public_ips
}

# --- Database ----------------------------------------------------------------------------------

output "db_endpoint" {
  description = "host:port of the PostgreSQL primary (DATABASE_URL)."
  value       = module.data.primary_endpoint
}

output "db_address" {
  description = "Host name of the PostgreSQL primary."
  value       = module.data.primary_address
}

output "db_replica_endpoint" {
  description = "host:port of the read replica (DATABASE_READ_URL)."
  value       = module.data.replica_endpoint
}

output "db_replica_address" {
  description = "Host name of the read replica."
  value       = module.data.replica_address
}

output "db_port" {
  description = "PostgreSQL port of both instances."
  value       = module.data.port
}

output "db_name" {
  description = "Database name."
  value       = module.data.db_name
}

output "db_master_user_secret_arn" {
  description = "Secrets Manager secret <name>/rds/master with the master user's credentials (JSON: engine, host, port, username, password, dbname)."
  value       = module.data.master_secret_arn
}

output "db_master_secret_kms_key_arn" {
  description = "Key of the master secret (the rotation function's kmsKeyArn)."
  value       = module.data.master_secret_kms_key_arn
}

output "db_rotation_security_group_id" {
  description = "Security group for the rotation function (its vpcSecurityGroupIds)."
  value       = module.data.rotation_security_group_id
}

output "db_rotation_enabled" {
  description = "Whether the master secret is rotated (db_rotation_lambda_arn is set)."
  value       = module.data.rotation_enabled
}

output "db_security_group_id" {
  description = "Security group of the database."
  value       = module.data.security_group_id
}

output "db_log_group_names" {
  description = "CloudWatch log groups of the exported database logs."
  value       = module.data.log_group_names
}

# --- Archive -----------------------------------------------------------------------------------

output "archive_url" {
  description = "Target of the archive job, s3://<bucket>/<prefix> (Helm: archive.url; fetchreward archive --to or ARCHIVE_URL)."
  value       = local.archive_url
}

output "archive_bucket_name" {
  description = "Bucket of the user_logins archive."
  value       = module.data.archive_bucket_name
}

output "archive_bucket_arn" {
  description = "ARN of the archive bucket."
  value       = module.data.archive_bucket_arn
}

output "archive_kms_key_arn" {
  description = "Key of the archive bucket's SSE-KMS; readers of the archive need kms:Decrypt on it through S3."
  value       = module.data.archive_kms_key_arn
}

# --- Alarms and logs ---------------------------------------------------------------------------

output "alarm_topic_arn" {
  description = "SNS topic of the CloudWatch alarms; subscribe on-call here (or with alarm_subscriptions)."
  value       = module.observability.alarm_topic_arn
}

output "log_group_names" {
  description = "CloudWatch log groups of the services, by service (deploy/fluent-bit writes them)."
  value       = module.observability.log_group_names
}

output "logs_kms_key_arn" {
  description = "ARN of the key of the services' log groups."
  value       = module.observability.logs_kms_key_arn
}
