# Multi-stage build: compile with the Rust toolchain, run on a small non-root image.
# (No Docker engine runs on the project's CI machines, so CI does not build this image.)
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin warden

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /etc/warden /var/lib/warden && chown 65532:65532 /var/lib/warden
COPY --from=build /src/target/release/warden /usr/local/bin/warden
COPY config/warden.toml /etc/warden/warden.toml
USER 65532:65532
WORKDIR /var/lib/warden
# Listen on all interfaces inside the container; keep the store on a volume.
ENV WARDEN_SERVER__LISTEN=0.0.0.0:8080 \
    WARDEN_STORE__URL=sqlite:///var/lib/warden/warden.db
VOLUME ["/var/lib/warden"]
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/warden", "--config", "/etc/warden/warden.toml"]
