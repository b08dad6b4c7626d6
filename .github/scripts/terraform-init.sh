#!/usr/bin/env bash
# `terraform init` of deploy/terraform/environments/production with its S3 backend (versions.tf: `backend "s3" {}`),
# configured from the environment that .github/workflows/terraform.yml sets from repository
# variables. Extra arguments go to terraform init (both jobs pass -lockfile=readonly: the committed lock file decides the providers).
#
#   TF_STATE_BUCKET, TF_STATE_KEY, TF_STATE_REGION   required
#   TF_STATE_LOCK_TABLE                              optional: DynamoDB locking; else S3's own
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../../deploy/terraform/environments/production"

missing=()
for name in TF_STATE_BUCKET TF_STATE_KEY TF_STATE_REGION; do
  [[ -n "${!name:-}" ]] || missing+=("$name")
done
if ((${#missing[@]})); then
  echo "repository variables not set: ${missing[*]}" >&2
  exit 1
fi

args=(
  -backend-config="bucket=$TF_STATE_BUCKET"
  -backend-config="key=$TF_STATE_KEY"
  -backend-config="region=$TF_STATE_REGION"
  -backend-config="encrypt=true"
)
if [[ -n "${TF_STATE_LOCK_TABLE:-}" ]]; then
  args+=(-backend-config="dynamodb_table=$TF_STATE_LOCK_TABLE")
else
  args+=(-backend-config="use_lockfile=true")
fi

terraform init -input=false "${args[@]}" "$@"
