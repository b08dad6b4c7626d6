# PostgreSQL for the vault schema and public.user_logins: private, encrypted, TLS-only, a
# Multi-AZ primary and an in-region read replica (for reads that may lag, DATABASE_READ_URL in
# the design). The master password: secret.tf. The log groups: logs.tf. The archive of old
# months of user_logins (an S3 bucket and its key): archive.tf.
#
#   db key       storage and Performance Insights of both instances (unless var.kms_key_arn);
#                used through RDS only
#   network      private subnets, a security group open on 5432 to two groups only: the clients'
#                group below, which the EKS nodes carry (and so their pods: the VPC CNI gives a
#                pod the node's groups), and the rotation function's (secret.tf)
#   parameters   rds.force_ssl = 1; connections, disconnections, DDL, lock waits and statements
#                slower than var.log_min_duration_ms logged, bind parameters never

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  partition    = data.aws_partition.current.partition
  account_id   = data.aws_caller_identity.current.account_id
  account_root = "arn:${local.partition}:iam::${local.account_id}:root"

  db_kms_key_arn = var.kms_key_arn != null ? var.kms_key_arn : aws_kms_key.db[0].arn

  engine_major = split(".", var.engine_version)[0]

  replica_identifier = "${var.name}-replica"
  log_exports        = ["postgresql", "upgrade"]
}

# --- Database key ------------------------------------------------------------------------------

# RDS uses a key with the credentials of whoever creates or modifies the instance (and grants it
# makes then), so the key policy lets IAM principals of the account use it, through RDS only.
data "aws_iam_policy_document" "db_key" {
  count = var.kms_key_arn == null ? 1 : 0

  source_policy_documents = [var.key_administration_policy_json]

  statement {
    sid = "AccountThroughRds"
    actions = [
      "kms:Encrypt",
      "kms:Decrypt",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:CreateGrant",
      "kms:ListGrants",
      "kms:DescribeKey",
    ]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["rds.${var.region}.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:CallerAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_kms_key" "db" {
  count = var.kms_key_arn == null ? 1 : 0

  description              = "${var.name} PostgreSQL: storage and Performance Insights"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  deletion_window_in_days  = var.kms_deletion_window_days
  policy                   = data.aws_iam_policy_document.db_key[0].json
}

# --- Enhanced monitoring -----------------------------------------------------------------------

# RDS publishes OS metrics to CloudWatch Logs with this role.
data "aws_iam_policy_document" "rds_monitoring_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  count = var.monitoring_interval > 0 ? 1 : 0

  name               = "${var.name}-rds-monitoring"
  description        = "${var.name} PostgreSQL: enhanced monitoring"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_trust.json
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  count = var.monitoring_interval > 0 ? 1 : 0

  role       = aws_iam_role.rds_monitoring[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

# --- Network -----------------------------------------------------------------------------------

resource "aws_db_subnet_group" "this" {
  name        = var.name
  description = "${var.name} PostgreSQL"
  subnet_ids  = var.subnet_ids
}

resource "aws_security_group" "db" {
  name        = "${var.name}-db"
  description = "${var.name} PostgreSQL: reachable from the EKS cluster only"
  vpc_id      = var.vpc_id
}

# Membership is the permission: whatever carries this group reaches PostgreSQL. The cluster's
# launch template puts it on every node (modules/cluster, node_security_group_ids). It has no
# rules of its own; its members' other groups decide where else they may go.
resource "aws_security_group" "clients" {
  #checkov:skip=CKV2_AWS_5:Attached in another module: the environment passes output client_security_group_id to modules/cluster, whose node launch template puts it on every EKS node (node_security_group_ids); checkov does not follow a connection across modules
  name        = "${var.name}-db-clients"
  description = "${var.name} PostgreSQL clients: members reach the database on 5432"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "db_from_clients" {
  security_group_id            = aws_security_group.db.id
  referenced_security_group_id = aws_security_group.clients.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  description                  = "PostgreSQL from the database clients (the EKS nodes and their pods)"
}

resource "aws_vpc_security_group_ingress_rule" "db_from_other_clients" {
  for_each = var.client_security_group_ids

  security_group_id            = aws_security_group.db.id
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  description                  = "PostgreSQL from ${each.key}"
}

resource "aws_vpc_security_group_ingress_rule" "db_from_rotation" {
  security_group_id            = aws_security_group.db.id
  referenced_security_group_id = aws_security_group.rotation.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  description                  = "PostgreSQL from the master password rotation function"
}

resource "aws_db_parameter_group" "this" {
  name        = "${var.name}-postgres${local.engine_major}"
  family      = "postgres${local.engine_major}"
  description = "${var.name}: TLS required"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_connections"
    value = "1"
  }

  parameter {
    name  = "log_disconnections"
    value = "1"
  }

  # DDL only: a DML statement would carry tokens and ciphertexts in its text.
  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = tostring(var.log_min_duration_ms)
  }

  parameter {
    name  = "log_lock_waits"
    value = "1"
  }

  # A slow statement is logged without the values bound to it.
  parameter {
    name  = "log_parameter_max_length"
    value = "0"
  }

  lifecycle {
    create_before_destroy = true
  }
}

# --- Instances ---------------------------------------------------------------------------------

resource "aws_db_instance" "primary" {
  identifier     = var.name
  engine         = "postgres"
  engine_version = var.engine_version
  instance_class = var.instance_class

  allocated_storage     = var.allocated_storage
  max_allocated_storage = var.max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = local.db_kms_key_arn

  db_name  = var.db_name
  username = var.master_username

  # The password of secret.tf, sent to RDS and never kept in the state or a plan. RDS receives
  # it again only when master_password_version changes; the rotation function changes it in
  # between without Terraform noticing.
  password_wo         = ephemeral.aws_secretsmanager_random_password.master.random_password
  password_wo_version = var.master_password_version

  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.db.id]
  parameter_group_name   = aws_db_parameter_group.this.name
  publicly_accessible    = false
  multi_az               = var.multi_az

  backup_retention_period   = var.backup_retention_days
  copy_tags_to_snapshot     = true
  deletion_protection       = var.deletion_protection
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.name}-final"

  # IAM authentication is available, not required: the services log in with passwords, and
  # nobody has rds-db:connect.
  iam_database_authentication_enabled = true

  auto_minor_version_upgrade      = true
  performance_insights_enabled    = true
  performance_insights_kms_key_id = local.db_kms_key_arn
  monitoring_interval             = var.monitoring_interval
  monitoring_role_arn             = one(aws_iam_role.rds_monitoring[*].arn)
  enabled_cloudwatch_logs_exports = local.log_exports

  depends_on = [
    aws_iam_role_policy_attachment.rds_monitoring,
    aws_cloudwatch_log_group.postgres,
  ]
}

# Same region, same VPC and subnet group, same key (RDS encrypts an in-region replica with its
# source's key), same parameters. Readers connect to it with the services' own roles: the
# replica has the primary's roles and passwords.
resource "aws_db_instance" "replica" {
  #checkov:skip=CKV_AWS_133:A read replica holds the primary's data, which the primary's automated backups (backup_retention_days) and final snapshot already cover; backups of the replica would only be further copies of the vault's ciphertexts that outlive Forget's stated erasure window
  identifier          = local.replica_identifier
  replicate_source_db = aws_db_instance.primary.identifier
  instance_class      = coalesce(var.replica_instance_class, var.instance_class)

  max_allocated_storage = var.max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true

  vpc_security_group_ids = [aws_security_group.db.id]
  parameter_group_name   = aws_db_parameter_group.this.name
  publicly_accessible    = false
  multi_az               = var.replica_multi_az

  backup_retention_period = 0
  copy_tags_to_snapshot   = true
  deletion_protection     = var.deletion_protection
  # RDS takes no final snapshot of a read replica.
  skip_final_snapshot = true

  iam_database_authentication_enabled = true

  auto_minor_version_upgrade      = true
  performance_insights_enabled    = true
  performance_insights_kms_key_id = local.db_kms_key_arn
  monitoring_interval             = var.monitoring_interval
  monitoring_role_arn             = one(aws_iam_role.rds_monitoring[*].arn)
  enabled_cloudwatch_logs_exports = local.log_exports

  depends_on = [
    aws_iam_role_policy_attachment.rds_monitoring,
    aws_cloudwatch_log_group.postgres,
  ]
}
