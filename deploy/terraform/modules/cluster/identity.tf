# How pods get AWS credentials. Both ways are set up, and each service role (modules/pipeline)
# trusts both, so a pod ends up in the same role whichever its SDK picks:
#
#   IRSA           the cluster's IAM OIDC provider below; a role trusts one service account
#                  through it (the chart annotates each service account with its role:
#                  eks.amazonaws.com/role-arn)
#   Pod Identity   the eks-pod-identity-agent add-on (addons.tf); the associations (namespace +
#                  service account -> role) live beside the roles they bind, in modules/pipeline,
#                  so that this module does not depend on the pipeline while the pipeline's
#                  roles depend on this module's OIDC provider
#
# The AWS SDKs try web identity (IRSA) before container credentials (Pod Identity): with both in
# place, IRSA is used; removing the chart's annotation moves a service to Pod Identity without
# any change here.

# No thumbprint: IAM verifies the EKS OIDC issuer against its own trusted root CAs.
resource "aws_iam_openid_connect_provider" "this" {
  url            = aws_eks_cluster.this.identity[0].oidc[0].issuer
  client_id_list = ["sts.amazonaws.com"]

  tags = { Name = "${var.name}-eks-irsa" }
}

locals {
  # oidc.eks.<region>.amazonaws.com/id/<id>: the prefix of the IRSA condition keys.
  oidc_issuer = replace(aws_iam_openid_connect_provider.this.url, "https://", "")
}
