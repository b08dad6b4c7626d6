# Addresses of the flat configuration that deploy/terraform was before the modules (its state
# can be this environment's: the same backend key). Terraform moves these resources into the
# modules instead of destroying and re-creating them: the vault key above all, whose deletion
# would make every stored value unrecoverable. README.md, "Upgrading from the flat
# configuration", says what else such a state needs.

# --- modules/pipeline --------------------------------------------------------------------------

moved {
  from = aws_kms_key.vault
  to   = module.pipeline.aws_kms_key.vault
}

moved {
  from = aws_kms_alias.vault
  to   = module.pipeline.aws_kms_alias.vault
}

moved {
  from = aws_kms_key.sqs
  to   = module.pipeline.aws_kms_key.sqs
}

moved {
  from = aws_kms_alias.sqs
  to   = module.pipeline.aws_kms_alias.sqs
}

moved {
  from = aws_kms_key.dlq
  to   = module.pipeline.aws_kms_key.dlq
}

moved {
  from = aws_kms_alias.dlq
  to   = module.pipeline.aws_kms_alias.dlq
}

moved {
  from = aws_sqs_queue.main
  to   = module.pipeline.aws_sqs_queue.main
}

moved {
  from = aws_sqs_queue.dlq
  to   = module.pipeline.aws_sqs_queue.dlq
}

moved {
  from = aws_sqs_queue_redrive_allow_policy.dlq
  to   = module.pipeline.aws_sqs_queue_redrive_allow_policy.dlq
}

moved {
  from = aws_sqs_queue_policy.main
  to   = module.pipeline.aws_sqs_queue_policy.main
}

moved {
  from = aws_sqs_queue_policy.dlq
  to   = module.pipeline.aws_sqs_queue_policy.dlq
}

moved {
  from = aws_iam_role.service
  to   = module.pipeline.aws_iam_role.service
}

moved {
  from = aws_iam_role_policy.ingestor
  to   = module.pipeline.aws_iam_role_policy.ingestor
}

moved {
  from = aws_iam_role_policy.vault
  to   = module.pipeline.aws_iam_role_policy.vault
}

moved {
  from = aws_iam_role.triage
  to   = module.pipeline.aws_iam_role.triage
}

moved {
  from = aws_iam_role_policy.triage
  to   = module.pipeline.aws_iam_role_policy.triage
}

# --- modules/observability ---------------------------------------------------------------------

moved {
  from = aws_kms_key.logs
  to   = module.observability.aws_kms_key.logs
}

moved {
  from = aws_kms_alias.logs
  to   = module.observability.aws_kms_alias.logs
}

moved {
  from = aws_cloudwatch_log_group.service
  to   = module.observability.aws_cloudwatch_log_group.service
}

moved {
  from = aws_kms_key.alarms
  to   = module.observability.aws_kms_key.alarms
}

moved {
  from = aws_kms_alias.alarms
  to   = module.observability.aws_kms_alias.alarms
}

moved {
  from = aws_sns_topic.alarms
  to   = module.observability.aws_sns_topic.alarms
}

moved {
  from = aws_sns_topic_policy.alarms
  to   = module.observability.aws_sns_topic_policy.alarms
}

moved {
  from = aws_sns_topic_subscription.alarms
  to   = module.observability.aws_sns_topic_subscription.alarms
}

moved {
  from = aws_cloudwatch_metric_alarm.queue_oldest_message
  to   = module.observability.aws_cloudwatch_metric_alarm.queue_oldest_message
}

moved {
  from = aws_cloudwatch_metric_alarm.dlq_not_empty
  to   = module.observability.aws_cloudwatch_metric_alarm.dlq_not_empty
}

moved {
  from = aws_cloudwatch_metric_alarm.db_cpu
  to   = module.observability.aws_cloudwatch_metric_alarm.db_cpu
}

moved {
  from = aws_cloudwatch_metric_alarm.db_free_storage
  to   = module.observability.aws_cloudwatch_metric_alarm.db_free_storage
}

moved {
  from = aws_cloudwatch_metric_alarm.db_connections
  to   = module.observability.aws_cloudwatch_metric_alarm.db_connections
}

moved {
  from = aws_cloudwatch_metric_alarm.db_replica_lag
  to   = module.observability.aws_cloudwatch_metric_alarm.db_replica_lag
}

moved {
  from = aws_iam_role.fluent_bit
  to   = module.observability.aws_iam_role.fluent_bit
}

moved {
  from = aws_iam_role_policy.fluent_bit
  to   = module.observability.aws_iam_role_policy.fluent_bit
}

# --- modules/data ------------------------------------------------------------------------------

moved {
  from = aws_kms_key.db
  to   = module.data.aws_kms_key.db
}

moved {
  from = aws_iam_role.rds_monitoring
  to   = module.data.aws_iam_role.rds_monitoring
}

moved {
  from = aws_iam_role_policy_attachment.rds_monitoring
  to   = module.data.aws_iam_role_policy_attachment.rds_monitoring
}

moved {
  from = aws_db_subnet_group.this
  to   = module.data.aws_db_subnet_group.this
}

moved {
  from = aws_security_group.db
  to   = module.data.aws_security_group.db
}

moved {
  from = aws_db_parameter_group.this
  to   = module.data.aws_db_parameter_group.this
}

moved {
  from = aws_db_instance.this
  to   = module.data.aws_db_instance.primary
}
