# syntax=docker/dockerfile:1

# One image carries every Fetchreward binary; each deployment chooses its entrypoint:
#   /usr/local/bin/fetchreward-vault
#   /usr/local/bin/fetchreward-writer
#   /usr/local/bin/fetchreward-ingestor
#   /usr/local/bin/fetchreward            (operator CLI, the default entrypoint)
#
#   docker build -t fetchreward:local .

FROM rust:1.95-bookworm AS builder
WORKDIR /src

# protoc comes from the protoc-bin-vendored crate and rustls/aws-lc build with the toolchain's
# C compiler, so the builder needs no system packages.
COPY . .

# The cache mounts keep the registry and the target directory between builds; the binaries are
# copied out in the same step because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
        -p fetchreward-vault \
        -p fetchreward-writer \
        -p fetchreward-ingestor \
        -p fetchreward-cli \
    && mkdir -p /out \
    && cp target/release/fetchreward-vault \
          target/release/fetchreward-writer \
          target/release/fetchreward-ingestor \
          target/release/fetchreward \
          /out/

# glibc and libgcc only; runs as uid/gid 65532 (nonroot).
# checkov:skip=CKV_DOCKER_2: health is Kubernetes's probes on the ops port (/healthz, /readyz); the image holds no shell or HTTP client that a HEALTHCHECK could run
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="fetchreward" \
      org.opencontainers.image.description="PII-safe login pipeline: SQS ingestor, tokenization vault, Postgres writer, operator CLI" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /out/ /usr/local/bin/

ENV LOG_FORMAT=json \
    RUST_LOG=info

USER 65532:65532

# gRPC: vault 50051, writer 50052. Operations (/metrics /healthz /readyz): 9101, 9102, 9103.
EXPOSE 50051 50052 9101 9102 9103

ENTRYPOINT ["/usr/local/bin/fetchreward"]
