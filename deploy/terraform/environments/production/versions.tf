terraform {
  # Write-only arguments (the database's master password) need 1.11.
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # Exactly this version: .terraform.lock.hcl holds its hashes for every platform, and
      # deploy/lint/terraform_lock_check.py checks that the two agree.
      version = "6.28.0"
    }
  }

  # Remote state; bucket, key, region and locking come from -backend-config at init
  # (.github/scripts/terraform-init.sh, README "Usage").
  backend "s3" {}
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ Project = var.name }, var.tags)
  }
}
