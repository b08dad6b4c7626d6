output "alarm_topic_arn" {
  description = "SNS topic of the CloudWatch alarms; subscribe on-call here (or with alarm_subscriptions)."
  value       = aws_sns_topic.alarms.arn
}

output "log_group_names" {
  description = "CloudWatch log groups of the services, by service (deploy/fluent-bit writes them)."
  value       = { for service, group in aws_cloudwatch_log_group.service : service => group.name }
}

output "logs_kms_key_arn" {
  description = "ARN of the key of the services' log groups."
  value       = aws_kms_key.logs.arn
}

output "alarms_kms_key_arn" {
  description = "ARN of the key of the alarm topic."
  value       = aws_kms_key.alarms.arn
}

output "fluent_bit_role_arn" {
  description = "IRSA role of the Fluent Bit DaemonSet (aws-for-fluent-bit: serviceAccount.annotations.eks.amazonaws.com/role-arn)."
  value       = aws_iam_role.fluent_bit.arn
}

output "kms_key_arns" {
  description = "KMS keys of this module (logs, alarms)."
  value       = [aws_kms_key.logs.arn, aws_kms_key.alarms.arn]
}
