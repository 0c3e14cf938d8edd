//! Per-client rate limiting of the GraphQL routes with `tower_governor`: a token bucket
//! per client IP (`RATE_LIMIT_PER_MINUTE` sustained, `RATE_LIMIT_BURST` at once). Every
//! admitted response carries `x-ratelimit-limit` and `x-ratelimit-remaining`; over the
//! limit: 429 with `Retry-After`, `x-ratelimit-*` and a GraphQL-shaped body with code
//! `RATE_LIMITED`.
//!
//! tower_governor builds the limiter (its config builder, its keyed governor limiter
//! and our `KeyExtractor`), but its `Service` is not in the stack: the check runs in the
//! API routes' one middleware (`super::guard`). Its layer cost about 6 500 instructions
//! a request, 8 % of a cached response: another boxed service clone per request, and
//! headers built in a scratch map by validating and hashing their names each time. Here
//! they are constants written once (`bench/instructions_per_request.sh`).
//!
//! The client IP is the TCP peer, unless the peer is one of `TRUSTED_PROXIES`: then it is
//! the rightmost `X-Forwarded-For` address that is not itself a trusted proxy (each
//! proxy appends the address it received from, so everything left of the first
//! untrusted hop may be forged). IPv6 clients are keyed by their /64, which one host
//! usually holds whole. A background task drops idle keys, so memory stays bounded.
use super::reject::graphql_error;
use crate::telemetry;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tower_governor::GovernorError;
use tower_governor::governor::{GovernorConfigBuilder, SharedRateLimiter};
use tower_governor::key_extractor::KeyExtractor;

/// How often keys whose bucket is full again are dropped.
const RETAIN_EVERY: Duration = Duration::from_secs(10);

const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const AFTER: HeaderName = HeaderName::from_static("x-ratelimit-after");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

#[derive(Debug, Clone)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

/// The client address of a request (see the module docs), which `reject::guard` puts
/// in its extensions for the handlers: sign-in attempts are counted per client.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// The limiter of one router: admits or refuses each request by its client's bucket.
pub struct Limiter {
    buckets: SharedRateLimiter<IpAddr, StateInformationMiddleware>,
    /// `x-ratelimit-limit`, the same on every response.
    limit: HeaderValue,
}

/// An admitted request: what is left of its client's burst.
#[derive(Debug, Clone, Copy)]
pub struct Admitted {
    remaining: u32,
}

impl Limiter {
    /// Builds the limiter and starts the task that keeps its key map small; the task
    /// ends when the limiter (and so the router) is dropped. None for a zero burst.
    pub fn new(limit: &RateLimit, clients: ClientIp) -> Option<Arc<Self>> {
        let period = Duration::from_secs(60) / limit.per_minute.max(1);
        let config = GovernorConfigBuilder::default()
            .key_extractor(clients)
            .period(period)
            .burst_size(limit.burst)
            .use_headers()
            .finish()?;
        let buckets = config.limiter().clone();
        let weak = Arc::downgrade(&buckets);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RETAIN_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(buckets) = weak.upgrade() else {
                    return;
                };
                buckets.retain_recent();
                buckets.shrink_to_fit();
            }
        });
        Some(Arc::new(Self {
            buckets,
            limit: HeaderValue::from(limit.burst),
        }))
    }

    /// Takes a token from `client`'s bucket (`ClientIp::of` a request): each operation
    /// on a WebSocket draws from the bucket of the request that opened it.
    pub fn admit_client(&self, key: &IpAddr) -> Result<Admitted, Refused> {
        match self.buckets.check_key(key) {
            Ok(state) => Ok(Admitted {
                remaining: state.remaining_burst_capacity(),
            }),
            Err(denied) => Err(Refused::TooSoon {
                wait: denied.wait_time_from(self.buckets.clock().now()),
                limit: self.limit.clone(),
            }),
        }
    }

    /// Tells an admitted client where it stands.
    pub fn annotate(&self, admitted: Admitted, headers: &mut HeaderMap) {
        headers.insert(LIMIT, self.limit.clone());
        headers.insert(REMAINING, HeaderValue::from(admitted.remaining));
    }
}

/// A request the limiter turned away.
#[derive(Debug)]
pub enum Refused {
    /// The client's bucket is empty until `wait` has passed.
    TooSoon { wait: Duration, limit: HeaderValue },
    /// The request has no peer address (a router served without `ConnectInfo`).
    Unidentified,
}

impl Refused {
    /// Whole seconds until the client's bucket has a token again.
    pub fn retry_secs(&self) -> u64 {
        match self {
            Refused::TooSoon { wait, .. } => retry_secs(*wait),
            Refused::Unidentified => 1,
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let (wait, limit) = match self {
            Refused::TooSoon { wait, limit } => (wait, limit),
            Refused::Unidentified => {
                tracing::error!("rate limiter could not identify the client: no peer address");
                return graphql_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "internal error",
                );
            }
        };
        let retry = retry_secs(wait);
        let mut response = graphql_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            &too_many(retry),
        );
        refuse(&mut response, retry);
        let headers = response.headers_mut();
        headers.insert(LIMIT, limit);
        headers.insert(REMAINING, HeaderValue::from_static("0"));
        response
    }
}

/// Makes `response` a 429 that says when to come back: the general limit's refusals
/// and a GraphQL answer refused by a limit of its own (sign-in attempts) alike.
pub fn refuse(response: &mut Response, retry_secs: u64) {
    telemetry::rate_limited();
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_secs));
    headers.insert(AFTER, HeaderValue::from(retry_secs));
}

/// The wait a single GraphQL answer asks for when one of its errors is `RATE_LIMITED`
/// (a resolver's own limit, such as sign-in attempts): it is then answered 429.
pub fn retry_after(response: &async_graphql::BatchResponse) -> Option<u64> {
    let async_graphql::BatchResponse::Single(single) = response else {
        return None;
    };
    single.errors.iter().find_map(|error| {
        let extensions = error.extensions.as_ref()?;
        let limited = matches!(extensions.get("code"), Some(async_graphql::Value::String(code)) if code == "RATE_LIMITED");
        match extensions.get(crate::error::RETRY_AFTER) {
            Some(async_graphql::Value::Number(secs)) if limited => secs.as_u64(),
            _ => None,
        }
    })
}

/// Whole seconds, rounded up: a client that waits `Retry-After` finds a token.
pub fn retry_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// The message of every rate-limit refusal, over HTTP and WebSocket alike.
pub fn too_many(retry_secs: u64) -> String {
    format!("too many requests: retry in {retry_secs} s")
}

/// The rate-limit key: the client IP as described in the module docs.
#[derive(Debug, Clone)]
pub struct ClientIp {
    trusted: Arc<[IpNet]>,
}

impl ClientIp {
    pub fn new(trusted_proxies: Arc<[IpNet]>) -> Self {
        Self {
            trusted: trusted_proxies,
        }
    }

    /// The client of `request`; `None` without a peer address.
    pub fn of<B>(&self, request: &Request<B>) -> Option<IpAddr> {
        self.extract(request).ok()
    }
}

impl KeyExtractor for ClientIp {
    type Key = IpAddr;

    fn extract<T>(&self, req: &Request<T>) -> Result<IpAddr, GovernorError> {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .ok_or(GovernorError::UnableToExtractKey)?;
        let forwarded = || {
            req.headers()
                .get_all(X_FORWARDED_FOR)
                .iter()
                .filter_map(|v| v.to_str().ok())
        };
        Ok(bucket(client_ip(peer, forwarded, &self.trusted)))
    }
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// An `X-Forwarded-For` element: an address, possibly with a port (`[::1]:80`, `1.2.3.4:5`).
fn parse_hop(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim();
    raw.parse::<IpAddr>()
        .ok()
        .or_else(|| raw.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// The client's address: the peer, or (behind trusted proxies) the rightmost untrusted
/// `X-Forwarded-For` hop. `headers` gives the header's values in the order received;
/// it is only called for a trusted peer, so most requests never look the header up.
pub fn client_ip<'a, I: Iterator<Item = &'a str>>(
    peer: IpAddr,
    headers: impl FnOnce() -> I,
    trusted: &[IpNet],
) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let hops: Vec<&str> = headers().flat_map(|h| h.split(',')).collect();
    let mut client = peer;
    for raw in hops.iter().rev() {
        let Some(hop) = parse_hop(raw) else {
            // Garbage where a trusted proxy should have written an address: believe
            // nothing further left.
            return client;
        };
        client = hop;
        if !is_trusted(hop, trusted) {
            break;
        }
    }
    client
}

/// The limiter bucket of an address: IPv4 as is, IPv6 by its /64.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| unreachable!("test literal"))
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|s| s.parse().unwrap_or_else(|_| unreachable!("test literal")))
            .collect()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = nets(&["10.0.0.0/8"]);
        let forged = ["1.1.1.1"].into_iter();
        assert_eq!(client_ip(ip("8.8.8.8"), || forged, &trusted), ip("8.8.8.8"));
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "192.168.1.1/32"]);
        // The client forged 6.6.6.6; the edge proxy appended the real peer 5.5.5.5;
        // an inner proxy appended the edge proxy's address.
        let headers = ["6.6.6.6, 5.5.5.5", "192.168.1.1"].into_iter();
        assert_eq!(
            client_ip(ip("10.1.2.3"), || headers, &trusted),
            ip("5.5.5.5")
        );
    }

    #[test]
    fn a_trusted_peer_without_forwarding_is_the_client() {
        let trusted = nets(&["127.0.0.1/32"]);
        assert_eq!(
            client_ip(ip("127.0.0.1"), std::iter::empty, &trusted),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn garbage_stops_the_walk_and_ports_and_mapped_addresses_are_understood() {
        let trusted = nets(&["10.0.0.0/8"]);
        let headers = ["1.2.3.4, junk, 10.0.0.9"].into_iter();
        assert_eq!(
            client_ip(ip("10.0.0.1"), || headers, &trusted),
            ip("10.0.0.9")
        );
        let headers = ["[2001:db8::1]:443"].into_iter();
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), || headers, &trusted),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        assert_eq!(bucket(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(bucket(ip("9.9.9.9")), ip("9.9.9.9"));
    }
}
