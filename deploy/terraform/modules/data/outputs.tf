output "primary_identifier" {
  description = "Identifier of the primary instance."
  value       = aws_db_instance.primary.identifier
}

output "primary_endpoint" {
  description = "host:port of the primary (DATABASE_URL of the vault and the writer)."
  value       = aws_db_instance.primary.endpoint
}

output "primary_address" {
  description = "Host name of the primary."
  value       = aws_db_instance.primary.address
}

output "replica_identifier" {
  description = "Identifier of the read replica."
  value       = aws_db_instance.replica.identifier
}

output "replica_endpoint" {
  description = "host:port of the read replica (DATABASE_READ_URL)."
  value       = aws_db_instance.replica.endpoint
}

output "replica_address" {
  description = "Host name of the read replica."
  value       = aws_db_instance.replica.address
}

output "port" {
  description = "PostgreSQL port of both instances."
  value       = aws_db_instance.primary.port
}

output "db_name" {
  description = "Database name."
  value       = aws_db_instance.primary.db_name
}

output "master_username" {
  description = "Master user."
  value       = aws_db_instance.primary.username
}

output "master_secret_arn" {
  description = "Secrets Manager secret with the master user's credentials (JSON: engine, host, port, username, password, dbname)."
  value       = aws_secretsmanager_secret.master.arn
}

output "master_secret_kms_key_arn" {
  description = "Key of the master secret: the rotation function's kmsKeyArn."
  value       = aws_kms_key.secret.arn
}

output "client_security_group_id" {
  description = "Security group whose members reach PostgreSQL: the cluster's nodes carry it (modules/cluster node_security_group_ids)."
  value       = aws_security_group.clients.id
}

output "security_group_id" {
  description = "Security group of the database."
  value       = aws_security_group.db.id
}

output "rotation_security_group_id" {
  description = "Security group for the rotation function (its vpcSecurityGroupIds)."
  value       = aws_security_group.rotation.id
}

output "rotation_enabled" {
  description = "Whether the master secret is rotated (rotation_lambda_arn is set)."
  value       = length(aws_secretsmanager_secret_rotation.master) > 0
}

output "max_allocated_storage" {
  description = "Storage autoscaling ceiling in GiB."
  value       = aws_db_instance.primary.max_allocated_storage
}

output "log_group_names" {
  description = "CloudWatch log groups of the exported database logs, by <identifier>/<log type>."
  value       = { for key, group in aws_cloudwatch_log_group.postgres : key => group.name }
}

output "db_kms_key_arn" {
  description = "Key of the storage and Performance Insights."
  value       = local.db_kms_key_arn
}

output "kms_key_arns" {
  description = "KMS keys this module uses: the database key (created here or given), the logs key, the secret key, the archive key."
  value       = [local.db_kms_key_arn, aws_kms_key.logs.arn, aws_kms_key.secret.arn, aws_kms_key.archive.arn]
}

output "archive_bucket_name" {
  description = "Bucket of the user_logins archive (fetchreward archive run --to s3://<bucket>/<prefix>)."
  value       = aws_s3_bucket.archive.bucket
}

output "archive_bucket_arn" {
  description = "ARN of the archive bucket."
  value       = aws_s3_bucket.archive.arn
}

output "archive_kms_key_arn" {
  description = "Key of the archive bucket's SSE-KMS: the archive job needs GenerateDataKey and Decrypt on it through S3."
  value       = aws_kms_key.archive.arn
}
