# syntax=docker/dockerfile:1
# Multi-stage build: compile with the Rust toolchain the project is tested with, ship only the
# binary on a distroless, non-root base (glibc, CA certificates for an https registry, no shell).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first: this layer is rebuilt only when Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked --bin replica-guard \
 && rm -rf src
COPY src ./src
# The dummy sources above are older than the real ones; touch so cargo rebuilds the crate.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin replica-guard

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/replica-guard /usr/local/bin/replica-guard
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/replica-guard"]
CMD ["serve", "--config", "/etc/replica-guard/config/config.yaml"]
