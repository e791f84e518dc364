# syntax=docker/dockerfile:1
# Multi-stage build: compile with the Rust toolchain the project is tested with, ship only the
# binary on a distroless, non-root base (glibc, CA certificates for an https registry, no shell).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first: this layer is rebuilt only when Cargo.toml or Cargo.lock change. The manifest
# also declares benches and an end-to-end test that the image does not build (and .dockerignore
# leaves out): cargo still wants their files to exist, so they get empty stand-ins.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches tests/e2e && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && for b in $(sed -n '/^\[\[bench\]\]/{n;s/^name = "\(.*\)"/\1/p}' Cargo.toml); do echo 'fn main() {}' > "benches/$b.rs"; done \
 && echo 'fn main() {}' > tests/e2e/main.rs \
 && cargo build --release --locked --bin replica-guard \
 && rm -rf src
COPY src ./src
# The dummy sources above are older than the real ones; touch so cargo rebuilds the crate.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin replica-guard

# `docker build --target ci`: the same binary with busybox's shell, for CI jobs whose runner needs
# one to run a script (GitLab's docker executor, GitHub's container jobs): `replica-guard check`.
FROM gcr.io/distroless/cc-debian12:debug-nonroot AS ci
COPY --from=build /src/target/release/replica-guard /usr/local/bin/replica-guard
USER 65532:65532
ENTRYPOINT ["/busybox/sh", "-c"]
CMD ["replica-guard --help"]

# The default target: the webhook image, no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/replica-guard /usr/local/bin/replica-guard
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/replica-guard"]
CMD ["serve", "--config", "/etc/replica-guard/config/config.yaml"]
