output "queue_url" {
  description = "URL of login-queue (Helm: ingestor.queueUrl)."
  value       = aws_sqs_queue.main.url
}

output "queue_arn" {
  description = "ARN of login-queue."
  value       = aws_sqs_queue.main.arn
}

output "queue_name" {
  description = "Name of login-queue."
  value       = aws_sqs_queue.main.name
}

output "dlq_url" {
  description = "URL of login-queue-dlq (Helm: ingestor.dlqUrl)."
  value       = aws_sqs_queue.dlq.url
}

output "dlq_arn" {
  description = "ARN of login-queue-dlq."
  value       = aws_sqs_queue.dlq.arn
}

output "dlq_name" {
  description = "Name of login-queue-dlq."
  value       = aws_sqs_queue.dlq.name
}

output "dlq_retention_seconds" {
  description = "Retention of login-queue-dlq."
  value       = aws_sqs_queue.dlq.message_retention_seconds
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

output "generation_kms_keys" {
  description = "Whether the vault creates a key per data-key generation (Helm: vault.generationKmsKeys)."
  value       = var.generation_kms_keys
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

output "k8s_namespace" {
  description = "Namespace of the Helm release the service roles trust."
  value       = var.k8s_namespace
}

output "service_accounts" {
  description = "Kubernetes service account of each service (ingestor, vault, writer) and of the archive job (archive)."
  value       = local.service_accounts
}

output "role_arns" {
  description = "Role of each service (ingestor, vault, writer) and of the archive job (archive), trusted through IRSA and EKS Pod Identity."
  value       = { for service, role in aws_iam_role.service : service => role.arn }
}

output "pod_identity_association_ids" {
  description = "EKS Pod Identity association of each service (ingestor, vault, writer) and of the archive job (archive)."
  value       = { for service, association in aws_eks_pod_identity_association.service : service => association.association_id }
}

output "ingestor_role_arn" {
  description = "Role of the ingestor (Helm: ingestor.serviceAccount.roleArn)."
  value       = aws_iam_role.service["ingestor"].arn
}

output "vault_role_arn" {
  description = "Role of the vault (Helm: vault.serviceAccount.roleArn)."
  value       = aws_iam_role.service["vault"].arn
}

output "writer_role_arn" {
  description = "Role of the writer, without permissions (Helm: writer.serviceAccount.roleArn)."
  value       = aws_iam_role.service["writer"].arn
}

output "archive_role_arn" {
  description = "Role of the archive job (Helm: archive.serviceAccount.roleArn): PutObject, GetObject and ListBucket under the archive prefix, the archive key through S3."
  value       = aws_iam_role.service["archive"].arn
}

output "kms_key_arns" {
  description = "KMS keys of this module (vault, SQS, DLQ)."
  value       = [aws_kms_key.vault.arn, aws_kms_key.sqs.arn, aws_kms_key.dlq.arn]
}
