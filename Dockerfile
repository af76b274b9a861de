# syntax=docker/dockerfile:1
# authgate: build with the pinned toolchain, run on distroless as uid 65532.
#   docker build -t authgate:0.1.0 .

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# BuildKit caches keep the registry and target/ between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin authgate \
 && cp target/release/authgate /authgate

# glibc + libgcc + CA certificates, no shell; ":nonroot" runs as 65532:65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /authgate /authgate
USER 65532:65532
EXPOSE 8443 9090
# A pod's `args:` replace CMD: a kube-rbac-proxy sidecar that changes only its
# image keeps its own args (kube-rbac-proxy's flags) and reads no config file.
ENTRYPOINT ["/authgate", "serve"]
CMD ["--config", "/etc/authgate/config.yaml"]
