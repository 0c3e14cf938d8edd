//! Black-box tests over a real socket. They run on SQLite + in-process cache by default,
//! and on PostgreSQL + Redis when TEST_DATABASE_URL / TEST_REDIS_URL are set.
mod abuse;
mod abuse_websocket;
mod accounts;
mod auth;
mod books;
mod cache;
mod cart;
mod catalog;
mod checkout;
mod checkout_faults;
mod graceful_stop;
mod helpers;
mod http;
mod n_plus_one;
mod protection;
mod recovery;
mod redis;
mod redis_process;
mod redis_topology;
mod response_order;
mod saga_helpers;
mod stale_reads;
mod stats;
mod traces;
mod ws;
