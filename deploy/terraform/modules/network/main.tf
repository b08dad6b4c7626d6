# The VPC of one environment: a public and a private subnet in each of three availability zones.
#
#   public subnets   the internet gateway's route; the NAT gateways and internet-facing load
#                    balancers live here. Nothing gets a public address by default.
#   private subnets  the EKS nodes and pods, the database, the interface endpoints. Outbound
#                    traffic leaves through the NAT gateway of its zone (or the single one when
#                    var.single_nat_gateway), AWS APIs through the endpoints (endpoints.tf).
#   default SG       stripped of every rule, so that nothing attached to it by accident talks.
#
# Flow logs of the whole VPC go to CloudWatch Logs (flow_logs.tf).

# The zones are named, not discovered: a zone AWS adds later must never reshuffle the subnets.
# The data source only confirms that the three named zones exist and are available.
data "aws_availability_zones" "selected" {
  state = "available"

  filter {
    name   = "zone-name"
    values = var.availability_zones
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id

  azs = var.availability_zones

  # A /19 per private subnet (pods take their addresses from these with the VPC CNI) and a /22
  # per public subnet after them: with a /16, 10.0.0.0/19, 10.0.32.0/19, 10.0.64.0/19 and
  # 10.0.96.0/22, 10.0.100.0/22, 10.0.104.0/22.
  private_cidrs = { for index, az in local.azs : az => cidrsubnet(var.cidr_block, 3, index) }
  public_cidrs  = { for index, az in local.azs : az => cidrsubnet(var.cidr_block, 6, 24 + index) }

  nat_azs = var.single_nat_gateway ? [local.azs[0]] : local.azs

  # The NAT gateway each zone's private route table sends to.
  nat_for_az = { for az in local.azs : az => var.single_nat_gateway ? local.azs[0] : az }

  cluster_tag = var.cluster_name != null ? { "kubernetes.io/cluster/${var.cluster_name}" = "shared" } : {}
}

resource "aws_vpc" "this" {
  cidr_block           = var.cidr_block
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = { Name = var.name }

  lifecycle {
    precondition {
      condition     = length(data.aws_availability_zones.selected.names) == 3
      error_message = "availability_zones must name three available zones of the region."
    }
  }
}

# No rule at all: the default security group of the VPC refuses everything.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id

  tags = { Name = "${var.name}-default-deny" }
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id

  tags = { Name = var.name }
}

# --- Subnets -----------------------------------------------------------------------------------

resource "aws_subnet" "public" {
  for_each = local.public_cidrs

  vpc_id                  = aws_vpc.this.id
  availability_zone       = each.key
  cidr_block              = each.value
  map_public_ip_on_launch = false

  tags = merge(local.cluster_tag, {
    Name                     = "${var.name}-public-${each.key}"
    Tier                     = "public"
    "kubernetes.io/role/elb" = "1"
  })
}

resource "aws_subnet" "private" {
  for_each = local.private_cidrs

  vpc_id                  = aws_vpc.this.id
  availability_zone       = each.key
  cidr_block              = each.value
  map_public_ip_on_launch = false

  tags = merge(local.cluster_tag, {
    Name                              = "${var.name}-private-${each.key}"
    Tier                              = "private"
    "kubernetes.io/role/internal-elb" = "1"
  })
}

# --- Routes ------------------------------------------------------------------------------------

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id

  tags = { Name = "${var.name}-public" }
}

resource "aws_route" "public_internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this.id
}

resource "aws_route_table_association" "public" {
  for_each = aws_subnet.public

  subnet_id      = each.value.id
  route_table_id = aws_route_table.public.id
}

resource "aws_eip" "nat" {
  for_each = toset(local.nat_azs)

  domain = "vpc"

  tags = { Name = "${var.name}-nat-${each.key}" }

  depends_on = [aws_internet_gateway.this]
}

resource "aws_nat_gateway" "this" {
  for_each = toset(local.nat_azs)

  allocation_id = aws_eip.nat[each.key].id
  subnet_id     = aws_subnet.public[each.key].id

  tags = { Name = "${var.name}-${each.key}" }

  depends_on = [aws_internet_gateway.this]
}

# One route table per zone, so that a zone's traffic stays on its own NAT gateway (and survives
# the loss of another zone) unless var.single_nat_gateway.
resource "aws_route_table" "private" {
  for_each = local.private_cidrs

  vpc_id = aws_vpc.this.id

  tags = { Name = "${var.name}-private-${each.key}" }
}

resource "aws_route" "private_nat" {
  for_each = aws_route_table.private

  route_table_id         = each.value.id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.this[local.nat_for_az[each.key]].id
}

resource "aws_route_table_association" "private" {
  for_each = aws_subnet.private

  subnet_id      = each.value.id
  route_table_id = aws_route_table.private[each.key].id
}
