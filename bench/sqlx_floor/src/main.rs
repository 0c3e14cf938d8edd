//! CONNECTIONS tasks on a pool of 16 (as the server's), each running the products
//! loader's statement for one id in a loop for SECONDS; prints the statements run and
//! this process's CPU per statement (user + system, from /proc).
//! usage: sqlx-floor DATABASE_URL [SECONDS] [CONNECTIONS]
use std::time::{Duration, Instant};

const STATEMENT: &str = "SELECT id, tenant_id, sku, name, description, price_cents, stock, \
    category_id, active, created_at, updated_at FROM products WHERE tenant_id = 'default' AND id = $1";

/// This process's CPU time in clock ticks (fields 14 and 15 of /proc/self/stat).
fn cpu_ticks() -> Result<u64, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after_name = stat
        .rsplit(')')
        .next()
        .ok_or("no process name in /proc/self/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: sqlx-floor DATABASE_URL [SECONDS] [CONNECTIONS]")?;
    let seconds: u64 = args.next().map_or(Ok(5), |s| s.parse())?;
    let connections: i64 = args.next().map_or(Ok(32), |s| s.parse())?;
    // As the server's requests' pool: no test of busy connections.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .min_connections(4)
        .test_before_acquire(false)
        .connect(&url)
        .await?;
    let stop = Instant::now() + Duration::from_secs(seconds);
    let before = cpu_ticks()?;
    let mut tasks = Vec::new();
    for task in 0..connections {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut done: i64 = 0;
            while Instant::now() < stop {
                let id = 9991 + (task + done) % 10;
                let rows = sqlx::query(STATEMENT).bind(id).fetch_all(&pool).await?;
                if rows.len() != 1 {
                    return Err(sqlx::Error::RowNotFound);
                }
                done += 1;
            }
            Ok(done)
        }));
    }
    let mut statements = 0;
    for task in tasks {
        statements += task.await??;
    }
    let ticks = cpu_ticks()? - before;
    // USER_HZ is 100 on Linux: a tick is 10 000 µs.
    println!(
        "RESULT statements={statements} per_s={} cpu_us_per_statement={}",
        statements / seconds as i64,
        ticks * 10_000 / statements.max(1) as u64
    );
    Ok(())
}
