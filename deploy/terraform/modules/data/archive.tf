# The archive of user_logins: the months `fetchreward archive run` exports (Parquet, zstd, with a
# manifest.json) before it drops their partitions, under <prefix>/user_logins/month=YYYY-MM/.
# It holds tokens, never originals, but it is customer data, and once a partition is dropped it
# is the only copy left after the database's backups expire (backup_retention_days).
#
#   archive key   SSE-KMS of every object, with an S3 bucket key; usable by the account's
#                 principals through S3 only and for this bucket only (its aws:s3:arn encryption
#                 context), as IAM grants it (modules/pipeline: the archive job's role);
#                 Encrypt, ReEncrypt and grants refused to everyone
#   bucket        versioned; public access blocked; ACLs disabled (BucketOwnerEnforced); its
#                 policy refuses requests without TLS 1.2 and objects written with another
#                 encryption or another key
#   lifecycle     Glacier Instant Retrieval after var.archive_glacier_ir_days (read as it is by
#                 a restore: no thaw), noncurrent versions expired after
#                 var.archive_noncurrent_version_days, incomplete multipart uploads aborted after
#                 7 days
#   object lock   off unless var.archive_object_lock_days: then every new version is kept in
#                 governance mode for that many days (irreversible on the bucket once on)
#
# Nothing here is allowed to delete: the job writes, reads and lists only (modules/pipeline).

locals {
  archive_bucket_name = coalesce(var.archive_bucket_name, "${var.name}-archive-${local.account_id}-${var.region}")
  # Known at plan, before the bucket exists: the key policy names the bucket it serves.
  archive_bucket_arn = "arn:${local.partition}:s3:::${local.archive_bucket_name}"
}

# --- Archive key -------------------------------------------------------------------------------

# S3 encrypts and decrypts with the caller's credentials: the caller needs GenerateDataKey
# (writing) and Decrypt (reading) on this key through IAM, and the key admits them only through
# S3, for this bucket. With a bucket key the encryption context is the bucket's ARN; without one
# (a request that turns it off), the object's.
data "aws_iam_policy_document" "archive_key" {
  source_policy_documents = [var.key_administration_policy_json]

  statement {
    sid       = "AccountThroughS3ForTheArchive"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.region}.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:CallerAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:aws:s3:arn"
      values   = [local.archive_bucket_arn, "${local.archive_bucket_arn}/*"]
    }
  }

  # S3 only ever asks for data keys and their decryption: nobody may wrap a plaintext of their
  # own into a blob of this key, or give themselves its use through a grant.
  statement {
    sid       = "DenyEncryptAndReEncrypt"
    effect    = "Deny"
    actions   = ["kms:Encrypt", "kms:ReEncrypt*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
  }

  statement {
    sid       = "DenyGrants"
    effect    = "Deny"
    actions   = ["kms:CreateGrant"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
  }
}

resource "aws_kms_key" "archive" {
  description              = "${var.name} archive: SSE-KMS of the user_logins archive bucket"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  deletion_window_in_days  = var.kms_deletion_window_days
  policy                   = data.aws_iam_policy_document.archive_key.json
}

resource "aws_kms_alias" "archive" {
  name          = "alias/${var.name}-archive"
  target_key_id = aws_kms_key.archive.key_id
}

# --- Bucket ------------------------------------------------------------------------------------

resource "aws_s3_bucket" "archive" {
  #checkov:skip=CKV_AWS_18:No log bucket exists in this configuration to receive server access logs (S3 delivers them only to a bucket with SSE-S3, not one under this key); the one principal allowed in is the archive job's role, whose every data key request is a KMS event in CloudTrail, and object-level auditing belongs to an organization trail's S3 data events
  #checkov:skip=CKV_AWS_144:The environment is one region by design (its database, keys and cluster too); the bucket is versioned and its storage classes keep every object in at least three availability zones. A copy in a second region needs a bucket and key there, outside this environment
  #checkov:skip=CKV2_AWS_62:Nothing consumes the bucket's events: the archive job verifies each object by reading it back before it drops a partition, and a failed run is a failed Kubernetes Job
  bucket = local.archive_bucket_name
}

resource "aws_s3_bucket_ownership_controls" "archive" {
  bucket = aws_s3_bucket.archive.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "archive" {
  bucket = aws_s3_bucket.archive.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "archive" {
  bucket = aws_s3_bucket.archive.id

  versioning_configuration {
    status = "Enabled"
  }
}

# Objects written without encryption headers (the job sends none) get this key; the bucket
# policy refuses any other.
resource "aws_s3_bucket_server_side_encryption_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.archive.arn
    }
    bucket_key_enabled = true
  }
}

data "aws_iam_policy_document" "archive_bucket" {
  statement {
    sid       = "DenyWithoutTls"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.archive.arn, "${aws_s3_bucket.archive.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "DenyTlsBelow12"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.archive.arn, "${aws_s3_bucket.archive.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }

  # A request without encryption headers gets the default above; one that names an encryption
  # must name SSE-KMS, and one that names a key must name this one, by its ARN.
  statement {
    sid       = "DenyOtherEncryption"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.archive.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "StringNotEqualsIfExists"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["aws:kms"]
    }
  }

  statement {
    sid       = "DenyOtherKeys"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.archive.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "StringNotEqualsIfExists"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = [aws_kms_key.archive.arn]
    }
  }

  # SSE-KMS named without a key would be the AWS managed key aws/s3.
  statement {
    sid       = "DenyKmsWithoutTheKey"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.archive.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["false"]
    }

    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = ["true"]
    }
  }

  statement {
    sid       = "DenyCustomerProvidedKeys"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.archive.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption-customer-algorithm"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "archive" {
  bucket = aws_s3_bucket.archive.id
  policy = data.aws_iam_policy_document.archive_bucket.json

  # A public access block applied after the policy would not judge it.
  depends_on = [aws_s3_bucket_public_access_block.archive]
}

resource "aws_s3_bucket_lifecycle_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id

  rule {
    id     = "archive-storage"
    status = "Enabled"

    filter {}

    # Instant retrieval: `fetchreward archive restore` reads the object as it is, at a higher
    # price per GB read than STANDARD and with 90 days' minimum storage.
    transition {
      days          = var.archive_glacier_ir_days
      storage_class = "GLACIER_IR"
    }

    # A month exported again (its partition took rows after the export) overwrites its object:
    # the previous version stays this long.
    noncurrent_version_expiration {
      noncurrent_days = var.archive_noncurrent_version_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  rule {
    id     = "expired-delete-markers"
    status = "Enabled"

    filter {}

    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.archive]
}

# Enables Object Lock on the (versioned) bucket, new or existing, and a default retention for
# every version written from then on. Governance mode: a principal allowed
# s3:BypassGovernanceRetention (none in this configuration) can still remove a version early.
resource "aws_s3_bucket_object_lock_configuration" "archive" {
  count = var.archive_object_lock_days > 0 ? 1 : 0

  bucket = aws_s3_bucket.archive.id

  rule {
    default_retention {
      mode = "GOVERNANCE"
      days = var.archive_object_lock_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.archive]
}
