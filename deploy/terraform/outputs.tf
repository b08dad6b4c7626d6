output "queue_url" {
  description = "URL of login-queue (Helm: ingestor.queueUrl)."
  value       = aws_sqs_queue.main.url
}

output "queue_arn" {
  description = "ARN of login-queue."
  value       = aws_sqs_queue.main.arn
}

output "dlq_url" {
  description = "URL of login-queue-dlq (Helm: ingestor.dlqUrl)."
  value       = aws_sqs_queue.dlq.url
}

output "dlq_arn" {
  description = "ARN of login-queue-dlq."
  value       = aws_sqs_queue.dlq.arn
}

output "kms_key_arn" {
  description = "ARN of the vault key (Helm: vault.kmsKeyId)."
  value       = aws_kms_key.vault.arn
}

output "kms_alias" {
  description = "Alias of the vault key."
  value       = aws_kms_alias.vault.name
}

output "deployment_id" {
  description = "The deployment id pinned in the key policies (Helm: vault.deploymentId)."
  value       = var.deployment_id
}

output "generation_key_policy_json" {
  description = "Key policy of the keys the vault creates per data-key generation (Helm: vault.generationKeyPolicy); null when generation_kms_keys is false."
  value       = var.generation_kms_keys ? data.aws_iam_policy_document.generation_key.json : null
}

output "sqs_kms_key_arn" {
  description = "ARN of the key of the queues' server-side encryption; producers need GenerateDataKey and Decrypt on it through SQS (sqs_producer_principal_arns)."
  value       = aws_kms_key.sqs.arn
}

output "dlq_kms_key_arn" {
  description = "ARN of the key that seals dead-lettered bodies (Helm: ingestor.dlqKmsKeyId)."
  value       = aws_kms_key.dlq.arn
}

output "dlq_kms_alias" {
  description = "Alias of the DLQ key (Helm: ingestor.dlqKmsKeyId accepts it as well)."
  value       = aws_kms_alias.dlq.name
}

output "triage_role_arn" {
  description = "Role that reads, opens and redrives dead letters; null when triage_principal_arns is empty."
  value       = one(aws_iam_role.triage[*].arn)
}

output "ingestor_role_arn" {
  description = "IRSA role of the ingestor (Helm: ingestor.serviceAccount.roleArn)."
  value       = aws_iam_role.service["ingestor"].arn
}

output "vault_role_arn" {
  description = "IRSA role of the vault (Helm: vault.serviceAccount.roleArn)."
  value       = aws_iam_role.service["vault"].arn
}

output "writer_role_arn" {
  description = "IRSA role of the writer, without permissions (Helm: writer.serviceAccount.roleArn)."
  value       = aws_iam_role.service["writer"].arn
}

output "db_endpoint" {
  description = "host:port of the PostgreSQL instance."
  value       = aws_db_instance.this.endpoint
}

output "db_address" {
  description = "Host name of the PostgreSQL instance."
  value       = aws_db_instance.this.address
}

output "db_name" {
  description = "Database name."
  value       = aws_db_instance.this.db_name
}

output "db_master_user_secret_arn" {
  description = "Secrets Manager secret holding the master user's credentials."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}

output "db_security_group_id" {
  description = "Security group of the database."
  value       = aws_security_group.db.id
}

output "alarm_topic_arn" {
  description = "SNS topic of the CloudWatch alarms; subscribe on-call here (or with alarm_subscriptions)."
  value       = aws_sns_topic.alarms.arn
}

output "log_group_names" {
  description = "CloudWatch log groups of the services, by service (deploy/fluent-bit writes them)."
  value       = { for service, group in aws_cloudwatch_log_group.service : service => group.name }
}

output "logs_kms_key_arn" {
  description = "ARN of the key of the log groups."
  value       = aws_kms_key.logs.arn
}

output "fluent_bit_role_arn" {
  description = "IRSA role of the Fluent Bit DaemonSet (aws-for-fluent-bit: serviceAccount.annotations.eks.amazonaws.com/role-arn)."
  value       = aws_iam_role.fluent_bit.arn
}
