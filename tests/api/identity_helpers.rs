//! A fake OIDC identity provider for the tests: key pairs made in the test (no private
//! key is committed), a JWKS document served on a loopback port that counts its
//! fetches and can change or go down, and tokens signed as the provider would.
#![allow(dead_code)]

use crate::helpers::{TestApp, spawn_with, test_settings};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use shopgraph::config::IdentitySettings;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

pub const ISSUER: &str = "https://id.example.test/";
pub const AUDIENCE: &str = "shopgraph-api";
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// A key pair of the provider: its private half signs, its public half is published.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    /// The public key as the JWKS document lists it.
    pub jwk: Value,
}

impl SigningKey {
    /// A fresh RSA 2048 key (RS256).
    pub fn rsa(kid: &str) -> Self {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
            .unwrap_or_else(|e| panic!("RSA key generation: {e}"));
        let der = private
            .to_pkcs1_der()
            .unwrap_or_else(|e| panic!("RSA key encoding: {e}"));
        Self::from_der(
            kid,
            Algorithm::RS256,
            EncodingKey::from_rsa_der(der.as_bytes()),
        )
    }

    /// A fresh P-256 key (ES256).
    pub fn ec(kid: &str) -> Self {
        use p256::pkcs8::EncodePrivateKey;
        let private = p256::SecretKey::random(&mut rsa::rand_core::OsRng);
        let der = private
            .to_pkcs8_der()
            .unwrap_or_else(|e| panic!("EC key encoding: {e}"));
        Self::from_der(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_der(der.as_bytes()),
        )
    }

    fn from_der(kid: &str, alg: Algorithm, encoding: EncodingKey) -> Self {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg)
            .unwrap_or_else(|e| panic!("public JWK of {kid}: {e}"));
        jwk.common.key_id = Some(kid.to_owned());
        let jwk = serde_json::to_value(&jwk).unwrap_or_else(|e| panic!("JWK as JSON: {e}"));
        Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            jwk,
        }
    }

    /// A token with these claims, naming this key.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// A token signed by this key but naming `kid` in its header.
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_owned());
        self.sign_with(&header, claims)
    }

    /// A token signed by this key under `header` as given.
    pub fn sign_with(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding)
            .unwrap_or_else(|e| panic!("sign a token: {e}"))
    }
}

/// Claims of a valid token: the provider's issuer, our audience, an hour to live, and
/// `extra` on top.
pub fn claims(extra: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "idp|user-1",
        "iat": now,
        "exp": now + 3600,
    });
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        claims.extend(extra);
    }
    claims
}

#[derive(Default)]
struct ProviderState {
    document: Mutex<Value>,
    cache_control: Mutex<Option<String>>,
    down: AtomicBool,
    fetches: AtomicUsize,
}

/// The provider's JWKS endpoint on a loopback port.
#[derive(Clone)]
pub struct FakeProvider {
    pub addr: SocketAddr,
    state: Arc<ProviderState>,
}

impl FakeProvider {
    pub async fn start(keys: &[&SigningKey]) -> Self {
        let state = Arc::new(ProviderState::default());
        let served = Arc::clone(&state);
        let router = axum::Router::new().route(
            JWKS_PATH,
            axum::routing::get(move || {
                let state = Arc::clone(&served);
                async move { serve(&state) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind the fake provider: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("provider address: {e}"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        let provider = Self { addr, state };
        provider.publish(keys);
        provider
    }

    pub fn url(&self) -> String {
        format!("http://{}{JWKS_PATH}", self.addr)
    }

    /// Replaces the published keys.
    pub fn publish(&self, keys: &[&SigningKey]) {
        let document = json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
        *self
            .state
            .document
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = document;
    }

    pub fn set_cache_control(&self, value: &str) {
        *self
            .state
            .cache_control
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(value.to_owned());
    }

    /// While down, every fetch is answered 503.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Requests the JWKS endpoint has received, answered or not.
    pub fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }
}

fn serve(state: &ProviderState) -> Response {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    if state.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let document = state
        .document
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut response = axum::Json(document).into_response();
    let cache_control = state
        .cache_control
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if let Some(value) = cache_control.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response
}

/// Identity settings trusting `provider`, claims where a Keycloak/Auth0 setup keeps
/// them: roles in `realm_access.roles` mapped from the provider's names, tenant and
/// customer id in namespaced claims.
pub fn identity(provider: &FakeProvider) -> IdentitySettings {
    IdentitySettings {
        jwt_jwks_url: Some(provider.url()),
        jwt_issuer: Some(ISSUER.to_owned()),
        jwt_audience: vec!["other-api".to_owned(), AUDIENCE.to_owned()],
        jwt_claim_tenant: "https://shop.example/tenant".to_owned(),
        jwt_claim_role: "realm_access.roles".to_owned(),
        jwt_claim_customer: "https://shop.example/customer_id".to_owned(),
        jwt_role_map: vec![
            "shop-admin=ADMIN".to_owned(),
            "shop-staff=STAFF".to_owned(),
            "shopper=CUSTOMER".to_owned(),
        ],
        jwt_default_role: None,
        jwt_jwks_min_interval: 30,
        jwt_jwks_ttl: 3600,
        jwt_jwks_timeout_ms: 2_000,
    }
}

/// The app trusting `provider`, with `tweak` applied to its identity settings.
pub async fn spawn_trusting(
    provider: &FakeProvider,
    tweak: impl FnOnce(&mut IdentitySettings),
) -> TestApp {
    let mut settings = test_settings().await;
    settings.identity = identity(provider);
    tweak(&mut settings.identity);
    spawn_with(settings).await
}

/// Claims of a token for `tenant` with the provider's `roles`.
pub fn roles_claims(tenant: &str, roles: &[&str], extra: Value) -> Value {
    let mut claims = claims(json!({
        "https://shop.example/tenant": tenant,
        "realm_access": { "roles": roles },
    }));
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        claims.extend(extra);
    }
    claims
}

/// Status, code and message of a request refused for its token.
pub async fn refusal(app: &TestApp, token: &str) -> (u16, String, String) {
    let response = app
        .post(
            Some(token),
            &[],
            &json!({ "query": "{ categories { id } }" }),
        )
        .await;
    let status = response.status().as_u16();
    let body: Value = response
        .json()
        .await
        .unwrap_or_else(|e| panic!("response is not JSON: {e}"));
    let error = &body["errors"][0];
    (
        status,
        error["extensions"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        error["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Whether `token` is accepted (a query it may run succeeds).
pub async fn accepted(app: &TestApp, token: &str) -> bool {
    let body = app
        .gql(Some(token), "{ categories { id } }", json!({}))
        .await;
    body.get("errors").is_none()
}

/// Polls `condition` every 50 ms until it holds or `within` has passed.
pub async fn eventually<F, Fut>(within: std::time::Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
