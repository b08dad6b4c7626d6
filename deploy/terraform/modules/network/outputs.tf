output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr_block" {
  description = "IPv4 range of the VPC."
  value       = aws_vpc.this.cidr_block
}

output "availability_zones" {
  description = "The three availability zones of the subnets."
  value       = local.azs
}

output "private_subnet_ids" {
  description = "Private subnets, in the order of availability_zones (nodes, pods, database, endpoints)."
  value       = [for az in local.azs : aws_subnet.private[az].id]
}

output "private_subnet_cidrs" {
  description = "IPv4 ranges of the private subnets, in the order of availability_zones."
  value       = [for az in local.azs : aws_subnet.private[az].cidr_block]
}

output "public_subnet_ids" {
  description = "Public subnets, in the order of availability_zones (NAT gateways, internet-facing load balancers)."
  value       = [for az in local.azs : aws_subnet.public[az].id]
}

output "private_route_table_ids" {
  description = "Route tables of the private subnets."
  value       = [for az in local.azs : aws_route_table.private[az].id]
}

output "nat_public_ips" {
  description = "Public addresses of the NAT gateways: the source of the private subnets' outbound traffic."
  value       = [for az in local.nat_azs : aws_eip.nat[az].public_ip]
}

output "endpoints_security_group_id" {
  description = "Security group of the interface VPC endpoints (HTTPS from the VPC)."
  value       = aws_security_group.endpoints.id
}

output "s3_cidr_blocks" {
  description = "IPv4 ranges of S3 in the region (its managed prefix list), which the S3 gateway endpoint routes: where a pod reaches S3 (Helm: networkPolicy.egress.s3.cidrs)."
  value       = aws_vpc_endpoint.s3.cidr_blocks
}

output "interface_endpoint_ids" {
  description = "Interface VPC endpoints, by service."
  value       = { for service, endpoint in aws_vpc_endpoint.interface : service => endpoint.id }
}

output "flow_log_group_name" {
  description = "CloudWatch log group of the VPC flow logs."
  value       = aws_cloudwatch_log_group.flow_logs.name
}

output "kms_key_arns" {
  description = "KMS keys of this module (the flow logs key)."
  value       = [aws_kms_key.flow_logs.arn]
}
