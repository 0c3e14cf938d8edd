//! A GraphQL commerce server: catalog, customers, carts, orders and a saga-orchestrated
//! checkout, behind a cache-aside layer that invalidates exactly what mutations change.

/// Who is calling: our JWTs and an identity provider's (JWKS), principals, roles and
/// the per-request actor.
pub mod auth;
/// The cache-aside layer: backends, keys, tags, policy and the GraphQL extension.
pub mod cache;
/// The checkout saga: acceptance, queue, workers, steps, compensations, events.
pub mod checkout;
/// Typed, validated settings from the environment and flags.
pub mod config;
/// The database: connection, migrations, statement counting, entities.
pub mod db;
/// Value types that parse input once: ids, money, quantities, names.
pub mod domain;
/// The one boundary error and its client-facing codes.
pub mod error;
/// The GraphQL schema, types, loaders and request context.
pub mod graphql;
/// The HTTP surface: GraphQL over HTTP and WebSocket, health, metrics, playground, and
/// the layers in front of them (CORS, rate limit, body limit).
pub mod http;
/// Where Redis runs (one server, Sentinel, Cluster) and connections that follow it.
pub mod redis_topology;
/// Business rules and transactions for catalog, customers, accounts and carts.
pub mod services;
/// Builds the whole application from settings (used by `main` and the tests).
pub mod startup;
/// Prometheus metrics: the process-wide recorder, metric names and recording helpers.
pub mod telemetry;
/// OpenTelemetry traces (off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set).
pub mod traces;
