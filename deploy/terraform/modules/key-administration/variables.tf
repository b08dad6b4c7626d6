variable "kms_admin_role_arns" {
  description = "IAM roles that administer the keys (administrative actions only, never Encrypt, Decrypt or GenerateDataKey). The account root is always an administrator."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.kms_admin_role_arns : can(regex("^arn:[^:]+:iam::[0-9]{12}:role/.+$", arn))])
    error_message = "kms_admin_role_arns must be IAM role ARNs (arn:<partition>:iam::<account>:role/<name>)."
  }
}
