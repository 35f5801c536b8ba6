# Warden's image: the release binary on distroless (glibc, no shell, no package manager), run as
# uid 65532. Build and run: README.md, "Deploying". No Docker engine runs on the project's CI
# machines: .ci/check-dockerfile lints this file (hadolint) and runs the build stage's commands
# in a dry mode instead (cargo resolves and plans the build, compiles nothing).

# The toolchain CI tests with (rust-version in Cargo.toml is the oldest that builds).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# Dependencies in a layer of their own, rebuilt only when Cargo.toml or Cargo.lock change:
# built against stub sources (every target Cargo.toml declares must exist: the benches are
# read from its [[bench]] tables), which are then
# removed with Warden's own artifacts, so that the next build compiles the real sources.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches tests/it \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && sed -n '/^\[\[bench\]\]/,/^name/s/^name = "\(.*\)"/\1/p' Cargo.toml > benches/.names \
    && while read -r b; do echo 'fn main() {}' > "benches/$b.rs"; done < benches/.names \
    && touch tests/it/main.rs \
    && cargo build --release --locked --bin warden \
    && rm -rf src benches tests target/release/warden target/release/.fingerprint/warden-* \
        target/release/deps/warden-* target/release/deps/libwarden-*

COPY . .
# target/store: an empty directory, copied below as the store's (the runtime image has no
# shell to make one).
RUN cargo build --release --locked --bin warden && mkdir -p target/store

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/warden /usr/local/bin/warden
COPY --from=build --chown=65532:65532 /src/target/store /var/lib/warden
USER 65532:65532
# A relative store.url (the default, sqlite://data/warden.db) lands in the volume too.
WORKDIR /var/lib/warden
# No config is built in (the repository's config/warden.toml has a demo client): mount one
# here. Every key can also be set with WARDEN_<SECTION>__<KEY>.
ENV WARDEN_CONFIG=/etc/warden/warden.toml
# The embedded store: tokens, API keys, clients, idempotency records.
VOLUME ["/var/lib/warden"]
# The port of README.md's `docker run` (server.listen = 0.0.0.0:8080); the config decides.
EXPOSE 8080
# No HEALTHCHECK: Kubernetes ignores it (its probes call /healthz and /readyz), and the image
# has no HTTP client to run one with. `docker run` users can probe /healthz from outside.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/warden"]
CMD ["serve"]
