output "policy_json" {
  description = "Key policy statement KeyAdministration, to merge into every key policy (source_policy_documents)."
  value       = data.aws_iam_policy_document.key_administration.json
}

output "administrators" {
  description = "The principals of KeyAdministration: the account root and kms_admin_role_arns."
  value       = local.administrators
}
