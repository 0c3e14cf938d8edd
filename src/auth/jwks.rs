//! An identity provider's signing keys (its JWKS document), fetched and kept.
//!
//! The set is fetched at start and kept for its `Cache-Control: max-age` (else a
//! configured TTL, both held between the minimum interval and a day). A request whose
//! key is cached never waits: once the set is stale it is refreshed in the background
//! and the cached keys serve meanwhile. A token naming an unknown `kid` (a rotation)
//! fetches the set at once — but fetches are serialised (one at a time; who waited
//! on one re-reads its result instead of fetching again) and at most one starts per
//! minimum interval, so a flood of made-up `kid`s costs the provider one request per
//! interval and is answered from the cached set. A failed fetch keeps the cached keys:
//! the provider being down only stops keys it has not published yet.
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// The longest a fetched set is trusted without a refresh, whatever max-age says.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// A larger document is refused: real sets hold a handful of keys.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Keys beyond this many in one document are ignored.
const MAX_KEYS: usize = 64;
/// The algorithms an RSA key verifies; an EC key verifies the one of its curve.
const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// One published public key and the algorithms it may verify.
pub struct VerifyingKey {
    pub key: DecodingKey,
    pub algorithms: Vec<Algorithm>,
}

/// Where the set lives and how often it may be fetched.
#[derive(Debug, Clone)]
pub struct KeySetConfig {
    pub url: String,
    pub timeout: Duration,
    /// Least time between the starts of two fetches.
    pub min_interval: Duration,
    /// How long a set is kept when the provider sends no max-age.
    pub default_ttl: Duration,
}

type Keys = HashMap<String, Arc<VerifyingKey>>;

struct Cached {
    keys: Arc<Keys>,
    /// When the set should be fetched again (in the background).
    fresh_until: Instant,
    /// Counts stored sets, so a request that waited for a fetch sees that one ran.
    generation: u64,
}

pub struct KeySet {
    config: KeySetConfig,
    client: reqwest::Client,
    cached: RwLock<Cached>,
    /// Held for the whole of a fetch (one at a time); holds when the last one began.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    background: AtomicBool,
}

impl KeySet {
    pub fn new(config: KeySetConfig) -> anyhow::Result<Arc<Self>> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            // A redirect must not take an https:// key set to plain HTTP.
            .https_only(config.url.starts_with("https://"))
            .build()?;
        Ok(Arc::new(Self {
            config,
            client,
            cached: RwLock::new(Cached {
                keys: Arc::default(),
                fresh_until: Instant::now(),
                generation: 0,
            }),
            fetching: tokio::sync::Mutex::new(None),
            background: AtomicBool::new(false),
        }))
    }

    /// Fetches the set (at start). A failure is logged, not fatal: tokens are refused
    /// until a later fetch succeeds.
    pub async fn prime(&self) {
        self.fetch_unless_recent(0).await;
    }

    /// The key named `kid`, fetching the set first when it is unknown (bounded).
    pub async fn key(self: &Arc<Self>, kid: &str) -> Option<Arc<VerifyingKey>> {
        let (found, stale, generation) = self.lookup(kid);
        if let Some(key) = found {
            if stale {
                self.refresh_in_background();
            }
            return Some(key);
        }
        self.fetch_unless_recent(generation).await;
        self.lookup(kid).0
    }

    fn lookup(&self, kid: &str) -> (Option<Arc<VerifyingKey>>, bool, u64) {
        let cached = self.cached.read().unwrap_or_else(PoisonError::into_inner);
        (
            cached.keys.get(kid).cloned(),
            Instant::now() >= cached.fresh_until,
            cached.generation,
        )
    }

    fn generation(&self) -> u64 {
        let cached = self.cached.read().unwrap_or_else(PoisonError::into_inner);
        cached.generation
    }

    fn refresh_in_background(self: &Arc<Self>) {
        if self.background.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let generation = this.generation();
            this.fetch_unless_recent(generation).await;
            this.background.store(false, Ordering::Release);
        });
    }

    /// Fetches the set unless another fetch stored one since `seen` was read, or one
    /// began less than the minimum interval ago.
    async fn fetch_unless_recent(&self, seen: u64) {
        let mut last = self.fetching.lock().await;
        if self.generation() != seen {
            return;
        }
        if last.is_some_and(|at| at.elapsed() < self.config.min_interval) {
            return;
        }
        *last = Some(Instant::now());
        let outcome = self.fetch().await;
        crate::telemetry::jwks_fetch(if outcome.is_ok() { "ok" } else { "error" });
        let mut cached = self.cached.write().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok((keys, max_age)) => {
                tracing::info!(keys = keys.len(), "identity provider keys fetched");
                let ttl = max_age
                    .unwrap_or(self.config.default_ttl)
                    .clamp(self.config.min_interval, MAX_TTL);
                *cached = Cached {
                    keys: Arc::new(keys),
                    fresh_until: Instant::now() + ttl,
                    generation: cached.generation + 1,
                };
            }
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "fetching the identity provider's keys failed; the cached keys stay");
                cached.fresh_until = Instant::now() + self.config.min_interval;
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<(Keys, Option<Duration>)> {
        use anyhow::Context;
        let mut response = self
            .client
            .get(&self.config.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .context("request the JWKS document")?
            .error_for_status()
            .context("the JWKS endpoint answered")?;
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.context("read the JWKS document")? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                anyhow::bail!("the JWKS document is larger than {MAX_DOCUMENT_BYTES} bytes");
            }
            body.extend_from_slice(&chunk);
        }
        Ok((parse_document(&body)?, max_age))
    }
}

/// `max-age` of a `Cache-Control` value; `no-cache`/`no-store` mean refresh as often
/// as allowed.
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control
        .split(',')
        .map(str::trim)
        .find_map(|directive| {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-cache" || lower == "no-store" {
                return Some(Duration::ZERO);
            }
            let secs = lower.strip_prefix("max-age=")?.trim_matches('"');
            secs.parse::<u64>().ok().map(Duration::from_secs)
        })
}

/// The signing keys of a JWKS document, by `kid`. Keys this server cannot or must not
/// use are skipped, not fatal: encryption keys, keys without a `kid`, symmetric keys
/// (a shared secret has no place in a public document, and taking one would let
/// anyone sign), curves and types we do not verify.
fn parse_document(body: &[u8]) -> anyhow::Result<Keys> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(body).map_err(|_| anyhow::anyhow!("not a JWKS document"))?;
    Ok(document
        .keys
        .into_iter()
        .take(MAX_KEYS)
        .filter_map(|raw| serde_json::from_value::<Jwk>(raw).ok())
        .filter_map(|jwk| verifying_key(&jwk))
        .collect())
}

fn verifying_key(jwk: &Jwk) -> Option<(String, Arc<VerifyingKey>)> {
    let kid = jwk.common.key_id.clone()?;
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let mut algorithms = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA_ALGORITHMS.to_vec(),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        _ => return None,
    };
    if let Some(declared) = jwk.common.key_algorithm {
        let declared = Algorithm::from_str(&declared.to_string()).ok()?;
        algorithms.retain(|alg| *alg == declared);
    }
    if algorithms.is_empty() {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid, Arc::new(VerifyingKey { key, algorithms })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_and_no_cache_means_as_often_as_allowed() {
        assert_eq!(
            max_age("public, max-age=3600, must-revalidate"),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(max_age("Max-Age=60"), Some(Duration::from_secs(60)));
        assert_eq!(max_age("no-cache"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    #[test]
    fn only_signing_keys_with_an_id_are_kept() {
        let n = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";
        let document = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "sig", "use": "sig", "alg": "RS256", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "any-rsa", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "alg": "RSA-OAEP", "n": n, "e": "AQAB"},
            {"kty": "RSA", "n": n, "e": "AQAB"},
            {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "EC", "kid": "mismatch", "crv": "P-256", "alg": "RS256", "x": "AA", "y": "AA"},
            {"kty": "weird", "kid": "w"},
        ]});
        let keys = parse_document(document.to_string().as_bytes()).unwrap_or_default();
        let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["any-rsa", "sig"]);
        assert_eq!(
            keys.get("sig").map(|k| k.algorithms.clone()),
            Some(vec![Algorithm::RS256])
        );
        assert_eq!(keys.get("any-rsa").map(|k| k.algorithms.len()), Some(6));
        assert!(parse_document(b"<html>").is_err());
    }
}
