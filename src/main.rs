//! The command line: load settings, set up tracing, run a subcommand.
use anyhow::Context;
use clap::{Parser, Subcommand};
use shopgraph::auth::{JwtKeys, Role};
use shopgraph::config::{LogFormat, Settings};
use shopgraph::domain::TenantId;
use shopgraph::services::seed::{self, SeedSize};
use shopgraph::startup::{self, App};
use shopgraph::traces;
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

/// A request allocates and frees thousands of small objects (resolver futures, values,
/// rows); glibc's malloc spent a quarter of the server's CPU on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "GraphQL commerce server")]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (default) with WORKER_CONCURRENCY checkout workers.
    Serve {
        /// API only: leave checkouts to `worker` processes.
        #[arg(long)]
        no_worker: bool,
    },
    /// Run checkout workers only (WORKER_CONCURRENCY of them), no HTTP.
    Worker,
    /// Run the simulated payment provider's HTTP API on BIND_ADDR, for workers in
    /// other processes to share (PAYMENT_GATEWAY_URL).
    Gateway,
    /// Apply pending migrations and exit.
    Migrate,
    /// Load the demo shop, or generate N products and M customers.
    Seed {
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        products: Option<usize>,
        #[arg(long, default_value_t = 0)]
        customers: usize,
        /// Finished orders (1-5 lines each) over the last year, for statistics.
        #[arg(long, default_value_t = 0)]
        orders: usize,
    },
    /// Recompute the statistics' aggregates from the orders, after orders were written
    /// by other means than checkouts (an import, SQL by hand).
    RebuildStats {
        /// Only compare them with a recomputation: print the differences, change
        /// nothing, and fail when there are any.
        #[arg(long)]
        check: bool,
    },
    /// Write the GraphQL SDL.
    ExportSchema {
        #[arg(long, default_value = "schema.graphql")]
        out: PathBuf,
    },
    /// Print a signed JWT (and nothing else) for trying the API.
    Token {
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        sub: String,
        #[arg(long, default_value = "CUSTOMER")]
        role: Role,
        /// Lifetime in hours.
        #[arg(long, default_value_t = 24)]
        hours: i64,
    },
}

/// Logs to stderr (`RUST_LOG`), and spans to an OpenTelemetry collector when one is
/// configured (`traces`; `OTEL_TRACES_FILTER`, default `info`, says which spans); the
/// returned guard flushes the last spans when dropped.
fn init_tracing(format: LogFormat) -> anyhow::Result<Option<traces::Exporting>> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let logged = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,tower_http=info"));
    let (spans, exporting) = match traces::layer()? {
        Some((layer, exporting)) => {
            let traced = EnvFilter::try_from_env("OTEL_TRACES_FILTER")
                .unwrap_or_else(|_| EnvFilter::new("info"));
            (Some(layer.with_filter(traced)), Some(exporting))
        }
        None => (None, None),
    };
    let registry = tracing_subscriber::registry().with(spans);
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Json => registry.with(logs.json().with_filter(logged)).init(),
        LogFormat::Text => registry.with(logs.with_filter(logged)).init(),
    }
    Ok(exporting)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = cli.settings;
    if let Some(Command::ExportSchema { out }) = &cli.command {
        std::fs::write(out, shopgraph::graphql::schema::sdl())
            .with_context(|| format!("write {}", out.display()))?;
        return Ok(());
    }
    settings.validate()?;
    match cli.command.unwrap_or(Command::Serve { no_worker: false }) {
        Command::Serve { no_worker } => {
            let _exporting = init_tracing(settings.log_format)?;
            let mut settings = settings;
            if no_worker {
                settings.worker_concurrency = 0;
            }
            App::build(settings)
                .await?
                .run_until(shutdown_signal())
                .await
        }
        Command::Worker => {
            let _exporting = init_tracing(settings.log_format)?;
            startup::run_workers(settings, shutdown_signal()).await
        }
        Command::Gateway => {
            let _exporting = init_tracing(settings.log_format)?;
            startup::run_gateway(settings, shutdown_signal()).await
        }
        Command::Migrate => {
            let _exporting = init_tracing(settings.log_format)?;
            let db = shopgraph::db::connect_with(&settings).await?;
            shopgraph::db::migrate(&db).await
        }
        Command::Seed {
            tenant,
            products,
            customers,
            orders,
        } => {
            let _exporting = init_tracing(settings.log_format)?;
            let tenant = TenantId::parse(&tenant).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
            let db = shopgraph::db::connect_with(&settings).await?;
            shopgraph::db::migrate(&db).await?;
            let seeded = match products {
                Some(products) => {
                    seed::generate(
                        &db,
                        &tenant,
                        SeedSize {
                            products,
                            customers,
                        },
                    )
                    .await
                }
                None => seed::seed_demo_if_empty(&db, &tenant).await.map(|_| ()),
            };
            seeded.map_err(|e| anyhow::anyhow!("seed: {e}"))?;
            if orders > 0 {
                let lines = seed::generate_orders(&db, &tenant, orders)
                    .await
                    .map_err(|e| anyhow::anyhow!("seed orders: {e}"))?;
                tracing::info!(orders, lines, "generated orders");
            }
            // Fresh statistics after a bulk load, so the planner does not pick an index
            // for an empty table (PostgreSQL's autovacuum would analyze only later).
            use sea_orm::ConnectionTrait;
            db.execute_unprepared("ANALYZE")
                .await
                .map_err(|e| anyhow::anyhow!("analyze after seeding: {e}"))?;
            Ok(())
        }
        Command::RebuildStats { check } => {
            let _exporting = init_tracing(settings.log_format)?;
            let db = shopgraph::db::connect_with(&settings).await?;
            shopgraph::db::migrate(&db).await?;
            if !check {
                return shopgraph::services::stats::tally::rebuild(&db)
                    .await
                    .map_err(|e| anyhow::anyhow!("rebuild statistics: {e}"));
            }
            let differences = shopgraph::services::stats::tally::verify(&db)
                .await
                .map_err(|e| anyhow::anyhow!("check statistics: {e}"))?;
            for difference in &differences {
                println!("{difference}");
            }
            if differences.is_empty() {
                Ok(())
            } else {
                anyhow::bail!(
                    "{} aggregate rows differ from the orders",
                    differences.len()
                )
            }
        }
        Command::ExportSchema { .. } => Ok(()),
        Command::Token {
            tenant,
            sub,
            role,
            hours,
        } => {
            let tenant = TenantId::parse(&tenant).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
            let keys = JwtKeys::new(&startup::jwt_secret(&settings)?);
            println!(
                "{}",
                keys.issue(&tenant, &sub, role, chrono::Duration::hours(hours))?
            );
            Ok(())
        }
    }
}
