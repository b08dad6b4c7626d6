# The image repository of the services (one image carries every binary): scanned on push,
# encrypted with a key of its own, tags immutable, old images expired.
#
# Tags are immutable except those named in var.ecr_mutable_tags (the release workflow's BuildKit
# cache, `buildcache`, which every release overwrites). The chart pins the image by digest in
# production, so a tag that could move would not change what runs anyway; immutability makes a
# version tag mean one image for good.

data "aws_iam_policy_document" "ecr_key" {
  source_policy_documents = [var.key_administration_policy_json]

  # ECR encrypts with grants it creates with the credentials of whoever creates the repository;
  # pushers and pullers need no permission on the key.
  statement {
    sid = "AccountThroughEcr"
    actions = [
      "kms:Encrypt",
      "kms:Decrypt",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:CreateGrant",
      "kms:RetireGrant",
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
      values   = ["ecr.${var.region}.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:CallerAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_kms_key" "ecr" {
  description              = "${var.name} ECR: encrypts the images of ${var.ecr_repository_name}"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  deletion_window_in_days  = var.kms_deletion_window_days
  policy                   = data.aws_iam_policy_document.ecr_key.json
}

resource "aws_kms_alias" "ecr" {
  name          = "alias/${var.name}-ecr"
  target_key_id = aws_kms_key.ecr.key_id
}

resource "aws_ecr_repository" "this" {
  #checkov:skip=CKV_AWS_51:Every tag is immutable except the ones var.ecr_mutable_tags names exactly (by default only buildcache, the BuildKit cache that .github/workflows/release.yml overwrites on every release and that no deployment pulls); with ecr_mutable_tags = [] the repository is plain IMMUTABLE
  name                 = var.ecr_repository_name
  image_tag_mutability = length(var.ecr_mutable_tags) > 0 ? "IMMUTABLE_WITH_EXCLUSION" : "IMMUTABLE"

  dynamic "image_tag_mutability_exclusion_filter" {
    for_each = var.ecr_mutable_tags
    content {
      filter      = image_tag_mutability_exclusion_filter.value
      filter_type = "WILDCARD"
    }
  }

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.ecr.arn
  }
}

# Untagged images (superseded cache manifests, images whose push failed half-way) go after
# var.ecr_untagged_expiry_days; of the tagged ones the newest var.ecr_keep_tagged_images stay.
# Keep that count above the releases a rollback may go back to: an image the chart pins by
# digest must still be here when a node pulls it.
resource "aws_ecr_lifecycle_policy" "this" {
  repository = aws_ecr_repository.this.name

  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Expire untagged images after ${var.ecr_untagged_expiry_days} days"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = var.ecr_untagged_expiry_days
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the newest ${var.ecr_keep_tagged_images} tagged images"
        selection = {
          tagStatus      = "tagged"
          tagPatternList = ["*"]
          countType      = "imageCountMoreThan"
          countNumber    = var.ecr_keep_tagged_images
        }
        action = { type = "expire" }
      },
    ]
  })
}
