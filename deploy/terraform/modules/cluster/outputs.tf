output "cluster_name" {
  description = "Name of the EKS cluster (aws eks update-kubeconfig --name)."
  value       = aws_eks_cluster.this.name
}

output "cluster_arn" {
  description = "ARN of the EKS cluster."
  value       = aws_eks_cluster.this.arn
}

output "cluster_endpoint" {
  description = "URL of the Kubernetes API."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64 CA certificate of the Kubernetes API."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "cluster_version" {
  description = "Kubernetes version of the control plane."
  value       = aws_eks_cluster.this.version
}

output "cluster_security_group_id" {
  description = "The cluster security group EKS created: on the control plane's interfaces and on every node."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

output "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider (IRSA)."
  value       = aws_iam_openid_connect_provider.this.arn
}

output "oidc_issuer" {
  description = "Issuer of the cluster's OIDC provider without https:// (the prefix of IRSA condition keys)."
  value       = local.oidc_issuer
}

output "node_role_arn" {
  description = "Role of the nodes."
  value       = aws_iam_role.node.arn
}

output "node_group_name" {
  description = "Name of the managed node group."
  value       = aws_eks_node_group.this.node_group_name
}

output "ecr_repository_url" {
  description = "URL of the image repository, <account>.dkr.ecr.<region>.amazonaws.com/<name> (chart image.repository)."
  value       = aws_ecr_repository.this.repository_url
}

output "ecr_repository_arn" {
  description = "ARN of the image repository (for the CI push role's policy)."
  value       = aws_ecr_repository.this.arn
}

output "ebs_kms_key_arn" {
  description = "Key of the nodes' volumes; a StorageClass of the EBS CSI driver may name it (parameters.kmsKeyId)."
  value       = aws_kms_key.ebs.arn
}

output "kms_key_arns" {
  description = "KMS keys of this module (secrets, logs, EBS, ECR)."
  value       = [aws_kms_key.secrets.arn, aws_kms_key.logs.arn, aws_kms_key.ebs.arn, aws_kms_key.ecr.arn]
}
