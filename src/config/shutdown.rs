//! Settings of a graceful stop (SIGTERM or Ctrl-C).
use anyhow::bail;
use clap::Args;
use std::time::Duration;

/// Longer than any orchestrator waits before it kills (Kubernetes' default is 30 s).
const MAX_SECS: u64 = 600;

#[derive(Debug, Clone, Args)]
pub struct ShutdownSettings {
    /// Seconds the server keeps serving after SIGTERM while `/health/ready` answers 503,
    /// so load balancers stop sending it requests before it stops listening (set it to
    /// the time your balancer takes to notice, e.g. 5 on Kubernetes).
    #[arg(
        long,
        env = "SHUTDOWN_DELAY_SECS",
        value_name = "SHUTDOWN_DELAY_SECS",
        default_value_t = 0,
        global = true
    )]
    pub shutdown_delay_secs: u64,

    /// Seconds the requests, WebSockets and checkout batches in flight get to finish
    /// once the server stops listening; what is still running then is dropped (a
    /// dropped checkout batch is resumed by another worker when its lease expires).
    #[arg(
        long,
        env = "SHUTDOWN_GRACE_SECS",
        value_name = "SHUTDOWN_GRACE_SECS",
        default_value_t = 20,
        global = true
    )]
    pub shutdown_grace_secs: u64,
}

impl ShutdownSettings {
    pub fn delay(&self) -> Duration {
        Duration::from_secs(self.shutdown_delay_secs)
    }

    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.shutdown_delay_secs > MAX_SECS {
            bail!("SHUTDOWN_DELAY_SECS must be at most {MAX_SECS}");
        }
        if self.shutdown_grace_secs > MAX_SECS {
            bail!("SHUTDOWN_GRACE_SECS must be at most {MAX_SECS}");
        }
        Ok(())
    }
}
