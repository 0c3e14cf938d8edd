# Build: the playground is prebuilt in playground/dist, so no Node.js is needed here.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/shopgraph

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /app shop
COPY --from=build /src/target/release/shopgraph /usr/local/bin/shopgraph
USER shop
WORKDIR /app
ENV BIND_ADDR=0.0.0.0:8000
EXPOSE 8000
ENTRYPOINT ["shopgraph"]
CMD ["serve"]
