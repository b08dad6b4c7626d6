# The production environment: everything Fetchreward needs in one AWS account and region, in one
# state, applied by one `terraform apply` (README.md):
#
#   network         VPC over three zones, NAT, flow logs, VPC endpoints
#   data            PostgreSQL primary and read replica, the master secret, the clients' group,
#                   the archive bucket of old user_logins months and its key
#   cluster         EKS, its nodes (members of that group) and add-ons, IRSA, the ECR repository
#   pipeline        the queues, the vault's keys, the services' and the archive job's roles
#   observability   the services' log groups, the alarms and their topic, the Fluent Bit role
#
# The modules depend on one another in this order and never back (no module needs a later
# one): network -> data -> cluster -> observability -> pipeline. The nodes carry the database's
# clients group; the pipeline's roles need the cluster's OIDC provider and make its pod identity
# associations; the vault's policy names every other module's keys. Within that, Terraform
# orders resources by their references.

module "key_administration" {
  source = "../../modules/key-administration"

  kms_admin_role_arns = var.kms_admin_role_arns
}

module "network" {
  source = "../../modules/network"

  name                           = var.name
  region                         = var.region
  cidr_block                     = var.vpc_cidr_block
  availability_zones             = var.availability_zones
  single_nat_gateway             = var.single_nat_gateway
  cluster_name                   = var.name
  interface_endpoint_services    = var.interface_endpoint_services
  flow_log_retention_days        = var.flow_log_retention_days
  key_administration_policy_json = module.key_administration.policy_json
  kms_deletion_window_days       = var.kms_deletion_window_days
}

module "data" {
  source = "../../modules/data"

  name           = var.name
  region         = var.region
  vpc_id         = module.network.vpc_id
  vpc_cidr_block = module.network.vpc_cidr_block
  subnet_ids     = module.network.private_subnet_ids

  engine_version         = var.db_engine_version
  instance_class         = var.db_instance_class
  replica_instance_class = var.db_replica_instance_class
  allocated_storage      = var.db_allocated_storage
  max_allocated_storage  = var.db_max_allocated_storage
  db_name                = var.db_name
  master_username        = var.db_master_username
  kms_key_arn            = var.db_kms_key_arn
  monitoring_interval    = var.db_monitoring_interval
  multi_az               = var.db_multi_az
  replica_multi_az       = var.db_replica_multi_az
  backup_retention_days  = var.db_backup_retention_days
  deletion_protection    = var.db_deletion_protection
  log_min_duration_ms    = var.db_log_min_duration_ms
  log_retention_days     = var.db_log_retention_days

  master_password_version     = var.db_master_password_version
  rotation_lambda_arn         = var.db_rotation_lambda_arn
  rotation_days               = var.db_rotation_days
  secret_recovery_window_days = var.db_secret_recovery_window_days

  archive_bucket_name             = var.archive_bucket_name
  archive_glacier_ir_days         = var.archive_glacier_ir_days
  archive_noncurrent_version_days = var.archive_noncurrent_version_days
  archive_object_lock_days        = var.archive_object_lock_days

  key_administration_policy_json = module.key_administration.policy_json
  kms_deletion_window_days       = var.kms_deletion_window_days
}

module "cluster" {
  source = "../../modules/cluster"

  name                   = var.name
  region                 = var.region
  kubernetes_version     = var.kubernetes_version
  support_type           = var.cluster_support_type
  subnet_ids             = module.network.private_subnet_ids
  endpoint_public_access = var.cluster_endpoint_public_access
  public_access_cidrs    = var.cluster_public_access_cidrs
  log_retention_days     = var.cluster_log_retention_days
  addon_versions         = var.cluster_addon_versions

  cluster_admin_principal_arns   = var.cluster_admin_principal_arns
  namespace_admin_principal_arns = { for arn in var.cluster_deploy_principal_arns : arn => [var.k8s_namespace] }

  node_ami_type       = var.node_ami_type
  node_instance_types = var.node_instance_types
  node_min_size       = var.node_min_size
  node_desired_size   = var.node_desired_size
  node_max_size       = var.node_max_size
  node_disk_size_gib  = var.node_disk_size_gib

  # Members of the database's clients group reach PostgreSQL; so, through the VPC CNI, do pods.
  node_security_group_ids = [module.data.client_security_group_id]

  ecr_repository_name      = var.ecr_repository_name
  ecr_mutable_tags         = var.ecr_mutable_tags
  ecr_keep_tagged_images   = var.ecr_keep_tagged_images
  ecr_untagged_expiry_days = var.ecr_untagged_expiry_days

  key_administration_policy_json = module.key_administration.policy_json
  kms_deletion_window_days       = var.kms_deletion_window_days
}

module "observability" {
  source = "../../modules/observability"

  name   = var.name
  region = var.region

  log_retention_days  = var.log_retention_days
  alarm_subscriptions = var.alarm_subscriptions

  # The names, not the pipeline's outputs: the pipeline depends on this module (its keys), and
  # an alarm may exist before the queue whose metric it watches.
  queue_name                         = var.queue_name
  dlq_name                           = var.dlq_name
  dlq_retention_seconds              = var.dlq_retention_seconds
  queue_oldest_message_alarm_seconds = var.queue_oldest_message_alarm_seconds

  db_instance_identifier       = module.data.primary_identifier
  db_max_allocated_storage     = var.db_max_allocated_storage
  db_replica_identifier        = module.data.replica_identifier
  db_cpu_alarm_percent         = var.db_cpu_alarm_percent
  db_free_storage_alarm_gib    = var.db_free_storage_alarm_gib
  db_connections_alarm_count   = var.db_connections_alarm_count
  db_replica_lag_alarm_seconds = var.db_replica_lag_alarm_seconds

  oidc_provider_arn          = module.cluster.oidc_provider_arn
  fluent_bit_namespace       = var.fluent_bit_namespace
  fluent_bit_service_account = var.fluent_bit_service_account
  opensearch_domain_arn      = var.opensearch_domain_arn

  key_administration_policy_json = module.key_administration.policy_json
  kms_deletion_window_days       = var.kms_deletion_window_days
}

module "pipeline" {
  source = "../../modules/pipeline"

  name          = var.name
  region        = var.region
  deployment_id = var.deployment_id

  queue_name                       = var.queue_name
  dlq_name                         = var.dlq_name
  max_receive_count                = var.max_receive_count
  queue_visibility_timeout_seconds = var.queue_visibility_timeout_seconds
  queue_message_retention_seconds  = var.queue_message_retention_seconds
  dlq_retention_seconds            = var.dlq_retention_seconds
  sqs_producer_principal_arns      = var.sqs_producer_principal_arns
  triage_principal_arns            = var.triage_principal_arns

  kms_alias                    = var.kms_alias
  sqs_kms_alias                = var.sqs_kms_alias
  dlq_kms_alias                = var.dlq_kms_alias
  kms_deletion_window_days     = var.kms_deletion_window_days
  vault_legacy_context_decrypt = var.vault_legacy_context_decrypt
  generation_kms_keys          = var.generation_kms_keys

  k8s_namespace              = var.k8s_namespace
  k8s_service_account_prefix = var.k8s_service_account_prefix
  oidc_provider_arn          = module.cluster.oidc_provider_arn
  cluster_name               = module.cluster.cluster_name
  cluster_arn                = module.cluster.cluster_arn

  archive_bucket_arn  = module.data.archive_bucket_arn
  archive_kms_key_arn = module.data.archive_kms_key_arn
  archive_prefix      = var.archive_prefix

  key_administration_policy_json = module.key_administration.policy_json
  protected_kms_key_arns = concat(
    module.network.kms_key_arns,
    module.cluster.kms_key_arns,
    module.data.kms_key_arns,
    module.observability.kms_key_arns,
  )
}
