//! A `shopgraph worker` process beside the test's app, for faults the app's own workers
//! cannot show: pausing (SIGSTOP), killing, and killing its database connections.
use crate::helpers::{SECRET, test_redis_url};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};

/// A `worker` process.
pub struct Worker {
    child: Child,
    log: PathBuf,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Worker {
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill {signal}: {e}"));
        assert!(status.success(), "kill {signal} failed");
    }

    pub fn log_lines_with(&self, text: &str) -> usize {
        self.log().lines().filter(|l| l.contains(text)).count()
    }

    /// The last lines of its log, for a failure's message.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// How the process ended, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

pub async fn start_worker(database_url: &str, provider: &str, prefix: &str, name: &str) -> Worker {
    let log = std::env::temp_dir().join(format!("{prefix}-{name}.log"));
    let file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_shopgraph"));
    command
        .arg("worker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("JWT_SECRET", SECRET)
        .env("SEED_DEMO", "false")
        .env("WORKER_CONCURRENCY", "2")
        .env("WORKER_BATCH_SIZE", "32")
        // No gathering between claims: the test pauses a worker to have its sagas taken
        // over, and a worker waiting for checkouts to gather holds none.
        .env("WORKER_GATHER_MS", "0")
        .env("SAGA_LEASE_SECS", "2")
        .env("SAGA_MAX_ATTEMPTS", "6")
        .env("PAYMENT_GATEWAY_URL", provider)
        .env("PAYMENT_TIMEOUT_MS", "1000")
        .env("SAGA_FAIL_RATE_RESERVE_STOCK", "0.3")
        .env("SAGA_FAIL_RATE_CHARGE_PAYMENT", "0.3")
        .env("SAGA_FAIL_RATE_CREATE_ORDER", "0.3")
        .env("CACHE_KEY_PREFIX", prefix)
        .env("RUST_LOG", "warn,shopgraph::checkout::worker=info")
        .stdout(Stdio::null())
        .stderr(file);
    if let Some(redis) = test_redis_url().await {
        command.env("REDIS_URL", redis);
    }
    Worker {
        child: command
            .spawn()
            .unwrap_or_else(|e| panic!("start a worker: {e}")),
        log,
    }
}
