# VPC endpoints: the AWS APIs the pipeline and the cluster call, reached without leaving the VPC.
#
#   interface endpoints  var.interface_endpoint_services (SQS, KMS, STS, ECR api and dkr, Logs,
#                        Secrets Manager), one network interface per private subnet, private DNS
#                        on, so the SDKs' regional host names resolve to them
#   S3 gateway           on the private route tables: image layers (ECR keeps them in S3) and
#                        the archive bucket (modules/data). S3 keeps its public addresses (the
#                        region's prefix list, output s3_cidr_blocks): the route, not DNS, keeps
#                        the traffic in the VPC
#
# The endpoints keep their default (full access) policy: who may do what stays with IAM and the
# resource policies. An endpoint policy conditioned on this account's principals would also
# refuse sts:AssumeRoleWithWebIdentity, which IRSA calls without a principal.

resource "aws_security_group" "endpoints" {
  name        = "${var.name}-vpc-endpoints"
  description = "${var.name}: HTTPS to the interface VPC endpoints from inside the VPC"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-vpc-endpoints" }
}

# Responses need no egress rule (security groups are stateful), so the group has none.
resource "aws_vpc_security_group_ingress_rule" "endpoints_https" {
  security_group_id = aws_security_group.endpoints.id
  cidr_ipv4         = aws_vpc.this.cidr_block
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  description       = "HTTPS from the VPC"
}

resource "aws_vpc_endpoint" "interface" {
  for_each = toset(var.interface_endpoint_services)

  vpc_id              = aws_vpc.this.id
  service_name        = "com.amazonaws.${var.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = [for subnet in aws_subnet.private : subnet.id]
  security_group_ids  = [aws_security_group.endpoints.id]
  private_dns_enabled = true

  tags = { Name = "${var.name}-${each.key}" }
}

resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.this.id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [for table in aws_route_table.private : table.id]

  tags = { Name = "${var.name}-s3" }
}
