# Build: the playground is prebuilt in playground/dist, so no Node.js is needed here.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/shopgraph

FROM debian:bookworm-slim
# A fixed numeric user (10001), so Kubernetes can check runAsNonRoot, and a data
# directory it owns: the embedded default (SQLite, generated JWT secret) writes there.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 shop \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home shop \
    && mkdir -p /app/data && chown 10001:10001 /app/data
COPY --from=build /src/target/release/shopgraph /usr/local/bin/shopgraph
USER 10001:10001
WORKDIR /app
ENV BIND_ADDR=0.0.0.0:8000 DATA_DIR=/app/data
VOLUME /app/data
EXPOSE 8000
ENTRYPOINT ["shopgraph"]
CMD ["serve"]
