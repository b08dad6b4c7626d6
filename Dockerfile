# syntax=docker/dockerfile:1

# One image carries every Fetchreward binary; each deployment chooses its entrypoint:
#   /usr/local/bin/fetchreward-vault
#   /usr/local/bin/fetchreward-writer
#   /usr/local/bin/fetchreward-ingestor
#   /usr/local/bin/fetchreward            (operator CLI, the default entrypoint; also the probe
#                                          of healthchecks: fetchreward health grpc|http)
#
#   docker build -t fetchreward:local .          (CI: the pinned official bases below)
#   make image                                   (machines without registry access, see
#                                                 dev/image.sh: BINARIES=prebuilt and a runtime
#                                                 base built from Debian packages)
#
# The bases are pinned by digest; Dependabot (docker ecosystem) proposes the updates.
# checkov:skip=CKV_DOCKER_7: every FROM names an ARG whose default is pinned by digest, or a stage of this file; checkov does not resolve ARG defaults
ARG BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:bd2899c12b335c827750ccf2359879eab09c09b206023dcebea408947d54127c
# compiled: build the binaries in BUILDER_IMAGE; prebuilt: take them, built and stripped on a
# bookworm host, from target/image/bin in the build context.
ARG BINARIES=compiled

FROM ${BUILDER_IMAGE} AS compiled
WORKDIR /src

# protoc comes from the protoc-bin-vendored crate and rustls/aws-lc build with the toolchain's
# C compiler, so the builder needs no system packages.
COPY . .

# The cache mounts keep the registry and the target directory between builds; the binaries are
# copied out in the same step because a cache mount is not part of the image. The optimiser is
# guided by the committed profile (dev/release-rustflags.sh, docs/performance.md).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    RUSTFLAGS="$(bash dev/release-rustflags.sh)" cargo build --release --locked \
        -p fetchreward-vault \
        -p fetchreward-writer \
        -p fetchreward-ingestor \
        -p fetchreward-cli \
    && mkdir -p /out \
    && cp target/release/fetchreward-vault \
          target/release/fetchreward-writer \
          target/release/fetchreward-ingestor \
          target/release/fetchreward \
          /out/ \
    && strip --strip-all /out/*

FROM scratch AS prebuilt
COPY target/image/bin/ /out/

FROM ${BINARIES} AS binaries

# glibc, libgcc and CA certificates only, no shell; runs as uid/gid 65532 (nonroot).
# checkov:skip=CKV_DOCKER_2: one image, four entrypoints on different ports: each deployment declares its own check (Kubernetes probes on /healthz and /readyz, compose healthchecks running fetchreward health)
FROM ${RUNTIME_IMAGE}

LABEL org.opencontainers.image.title="fetchreward" \
      org.opencontainers.image.description="PII-safe login pipeline: SQS ingestor, tokenization vault, Postgres writer, operator CLI" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=binaries /out/ /usr/local/bin/

ENV LOG_FORMAT=json \
    RUST_LOG=info

USER 65532:65532

# gRPC: vault 50051, writer 50052. Operations (/metrics /healthz /readyz): 9101, 9102, 9103.
EXPOSE 50051 50052 9101 9102 9103

ENTRYPOINT ["/usr/local/bin/fetchreward"]
