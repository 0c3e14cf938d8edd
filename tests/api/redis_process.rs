//! Redis servers started by a test on free loopback ports, stopped (by PID) on drop.
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisProcess {
    child: Child,
    pub port: u16,
    append_only: bool,
    dir: PathBuf,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn spawn(port: u16, primary_port: Option<u16>, append_only: bool, dir: &PathBuf) -> Child {
    let mut command = Command::new("redis-server");
    command
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", if append_only { "yes" } else { "no" }])
        .args(["--appendfsync", "always"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(primary) = primary_port {
        command.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
    }
    command
        .spawn()
        .unwrap_or_else(|e| panic!("TEST_REDIS_URL is set, so redis-server must be installed: {e}"))
}

impl RedisProcess {
    /// Starts `redis-server` on `port`, optionally as a replica of `primary_port`.
    pub async fn start(port: u16, primary_port: Option<u16>) -> Self {
        Self::start_in(port, primary_port, false).await
    }

    /// An append-only server: `restart` brings it back with its data.
    pub async fn start_persistent(port: u16) -> Self {
        Self::start_in(port, None, true).await
    }

    async fn start_in(port: u16, primary_port: Option<u16>, append_only: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("shop-redis-{port}-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let process = Self {
            child: spawn(port, primary_port, append_only, &dir),
            port,
            append_only,
            dir,
        };
        process.wait_until(|info| !info.is_empty()).await;
        if primary_port.is_some() {
            process
                .wait_until(|info| info.contains("master_link_status:up"))
                .await;
        }
        process
    }

    /// Kills the server (SIGKILL); its directory stays for `restart`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port and directory.
    pub async fn restart(&mut self) {
        self.kill();
        self.child = spawn(self.port, None, self.append_only, &self.dir);
        self.wait_until(|info| !info.is_empty()).await;
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn info(&self, section: &str) -> String {
        let Ok(client) = redis::Client::open(self.url()) else {
            return String::new();
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return String::new();
        };
        redis::cmd("INFO")
            .arg(section)
            .query_async(&mut conn)
            .await
            .unwrap_or_default()
    }

    async fn wait_until(&self, ready: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if ready(&self.info("replication").await) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server on port {} did not become ready", self.port);
    }

    /// How many times this server ran `command` (from INFO commandstats).
    pub async fn calls(&self, command: &str) -> u64 {
        let stats = self.info("commandstats").await;
        let prefix = format!("cmdstat_{command}:calls=");
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP link to a local port that the test can stall: while paused, bytes already on
/// their way are held and nothing more is read, as in a congested network. Both
/// directions stall, so a replica behind it neither receives the primary's stream nor
/// acknowledges it, but its link stays up until Redis' replication timeout.
pub struct StallableLink {
    pub port: u16,
    paused: tokio::sync::watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl StallableLink {
    pub async fn to(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind a link: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("link address: {e}"))
            .port();
        let (paused, watch) = tokio::sync::watch::channel(false);
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                else {
                    continue;
                };
                let (from_client, to_client) = inbound.into_split();
                let (from_target, to_target) = outbound.into_split();
                tokio::spawn(forward(from_client, to_target, watch.clone()));
                tokio::spawn(forward(from_target, to_client, watch.clone()));
            }
        });
        Self {
            port,
            paused,
            accept,
        }
    }

    pub fn stall(&self) {
        self.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.paused.send_replace(false);
    }
}

impl Drop for StallableLink {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
