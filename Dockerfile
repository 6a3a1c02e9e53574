# syntax=docker/dockerfile:1
# Stampede's image: the one binary on a slim Debian, run as a non-root user.
#
#   docker build -t stampede .
#   docker run -p 8080:8080 -v stampede-data:/var/lib/stampede stampede
#
# Embedded mode keeps its SQLite files in the volume; cluster mode takes its
# settings from STAMPEDE_* variables (README, "Configuration"). Secrets are
# never baked in: pass STAMPEDE_JWT_SECRET and the others at run time.

# --- build -----------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# The registry and the target directory are BuildKit cache mounts: a rebuild
# after a source change recompiles our crates, not the dependencies.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p stampede \
    && cp target/release/stampede /usr/local/bin/stampede

# --- run -------------------------------------------------------------------
FROM debian:bookworm-slim
# curl for the health check only; CA certificates for outbound TLS (webhooks,
# a payment provider, an https collector).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/stampede --create-home stampede
COPY --from=build /usr/local/bin/stampede /usr/local/bin/stampede

ENV STAMPEDE_LISTEN=0.0.0.0:8080 \
    STAMPEDE_DATA_DIR=/var/lib/stampede \
    STAMPEDE_LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/stampede
VOLUME ["/var/lib/stampede"]
EXPOSE 8080

# Liveness only: readiness (/readyz) is for the load balancer, and a node
# that is alive but not ready must not be restarted for it.
HEALTHCHECK --interval=10s --timeout=2s --start-period=20s --retries=3 \
    CMD ["curl", "--fail", "--silent", "--max-time", "2", "http://127.0.0.1:8080/livez"]
# SIGTERM drains: in-flight requests finish, queued orders commit
# (--shutdown-grace-secs, 30 s by default); give the container longer.
STOPSIGNAL SIGTERM
ENTRYPOINT ["stampede"]
CMD ["serve"]
