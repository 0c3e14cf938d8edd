//! Tokens of an external identity provider (`JWT_JWKS_URL`): RS256/ES256 signatures
//! against a JWKS document served by the test, claims mapped to our roles, tenants and
//! customers, refusals, key rotation, a flood of unknown `kid`s and a provider outage.
use crate::helpers::{error_code, spawn_app, spawn_with, test_settings};
use crate::identity_helpers::{
    FakeProvider, SigningKey, accepted, claims, eventually, identity, refusal, roles_claims,
    spawn_trusting,
};
use crate::ws::{Heard, Socket};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use shopgraph::services::customers::ensure_tenant;
use std::time::Duration;

#[tokio::test]
async fn rs256_and_es256_tokens_act_as_their_mapped_role_tenant_and_customer() {
    let (rsa, ec) = (SigningKey::rsa("rsa-1"), SigningKey::ec("ec-1"));
    let provider = FakeProvider::start(&[&rsa, &ec]).await;
    let app = spawn_trusting(&provider, |_| {}).await;
    let ana = app.create_customer("Ana", "ana@example.com").await;
    let bruno = app.create_customer("Bruno", "bruno@example.com").await;

    // A customer (RS256): roles the shop does not map are ignored, the customer id
    // comes from the namespaced claim, not from the provider's `sub`.
    let shopper = rsa.sign(&roles_claims(
        "default",
        &["offline_access", "shopper"],
        json!({ "https://shop.example/customer_id": ana.to_string() }),
    ));
    let me = app
        .data(
            Some(&shopper),
            "query($c: ID!) { customer(id: $c) { email } cart { itemCount } }",
            json!({"c": ana.to_string()}),
        )
        .await;
    assert_eq!(me["customer"]["email"], "ana@example.com");
    let other = app
        .gql(
            Some(&shopper),
            "query($c: ID!) { customer(id: $c) { email } }",
            json!({"c": bruno.to_string()}),
        )
        .await;
    assert_eq!(error_code(&other), "FORBIDDEN");

    // Staff (ES256) reads customers but is no admin; the most privileged mapped role
    // of the array wins.
    let staff = ec.sign(&roles_claims(
        "default",
        &["shopper", "shop-staff"],
        json!({}),
    ));
    let listed = app
        .data(Some(&staff), "{ customers { totalCount } }", json!({}))
        .await;
    assert_eq!(listed["customers"]["totalCount"], 2);
    let stats = app
        .gql(Some(&staff), "{ cacheStats { hits } }", json!({}))
        .await;
    assert_eq!(error_code(&stats), "FORBIDDEN");
    let admin = rsa.sign(&roles_claims("default", &["shop-admin"], json!({})));
    app.data(Some(&admin), "{ cacheStats { hits } }", json!({}))
        .await;

    // The tenant comes from the token: staff of another tenant sees none of these.
    ensure_tenant(&app.db, &crate::helpers::tenant("acme"), "Acme")
        .await
        .unwrap_or_else(|e| panic!("tenant: {e}"));
    let acme_staff = ec.sign(&roles_claims("acme", &["shop-staff"], json!({})));
    let acme = app
        .data(Some(&acme_staff), "{ customers { totalCount } }", json!({}))
        .await;
    assert_eq!(acme["customers"]["totalCount"], 0);

    // Our own HS256 tokens keep working beside the provider's.
    let own = app
        .data(
            Some(&app.customer(bruno)),
            "query($c: ID!) { customer(id: $c) { email } }",
            json!({"c": bruno.to_string()}),
        )
        .await;
    assert_eq!(own["customer"]["email"], "bruno@example.com");
}

#[tokio::test]
async fn a_token_without_a_known_role_or_customer_id_is_refused_unless_a_default_role_applies() {
    let rsa = SigningKey::rsa("rsa-1");
    let provider = FakeProvider::start(&[&rsa]).await;
    let strict = spawn_trusting(&provider, |_| {}).await;
    let ana = strict.create_customer("Ana", "ana@example.com").await;
    let no_role = rsa.sign(&roles_claims(
        "default",
        &["offline_access"],
        json!({ "https://shop.example/customer_id": ana }),
    ));
    let (status, code, message) = refusal(&strict, &no_role).await;
    assert_eq!((status, code.as_str()), (401, "UNAUTHENTICATED"));
    assert!(message.contains("no known role"), "{message}");
    let provider_sub = rsa.sign(&roles_claims("default", &["shopper"], json!({})));
    let (status, _, message) = refusal(&strict, &provider_sub).await;
    assert_eq!(status, 401);
    assert!(message.contains("customer id"), "{message}");

    let lenient = spawn_trusting(&provider, |identity| {
        identity.jwt_default_role = Some(shopgraph::auth::Role::Customer);
    })
    .await;
    let ana = lenient.create_customer("Ana", "ana@example.com").await;
    let shopper = rsa.sign(&roles_claims(
        "default",
        &[],
        json!({ "https://shop.example/customer_id": ana }),
    ));
    let cart = lenient
        .data(Some(&shopper), "{ cart { itemCount } }", json!({}))
        .await;
    assert_eq!(cart["cart"]["itemCount"], 0);
}

#[tokio::test]
async fn wrong_issuer_audience_expiry_signature_and_algorithm_are_refused() {
    let (rsa, ec) = (SigningKey::rsa("rsa-1"), SigningKey::ec("ec-1"));
    let provider = FakeProvider::start(&[&rsa, &ec]).await;
    let app = spawn_trusting(&provider, |_| {}).await;
    let valid = roles_claims("default", &["shop-staff"], json!({}));
    assert!(accepted(&app, &rsa.sign(&valid)).await);
    let with = |extra: serde_json::Value| {
        let mut claims = valid.clone();
        if let (Some(claims), serde_json::Value::Object(extra)) = (claims.as_object_mut(), extra) {
            claims.extend(extra);
        }
        claims
    };
    let now = chrono::Utc::now().timestamp();
    let unpublished = SigningKey::rsa("rsa-1");
    let mut cases = vec![
        (
            "wrong issuer",
            rsa.sign(&with(json!({"iss": "https://evil.example/"}))),
            "wrong issuer",
        ),
        (
            "wrong audience",
            rsa.sign(&with(json!({"aud": "someone-else"}))),
            "wrong audience",
        ),
        (
            "expired",
            rsa.sign(&with(json!({"exp": now - 120}))),
            "token expired",
        ),
        (
            "no audience",
            {
                let mut claims = valid.clone();
                claims.as_object_mut().map(|c| c.remove("aud"));
                rsa.sign(&claims)
            },
            "invalid token",
        ),
        // Signed by a key the provider never published, under a published kid.
        ("forged", unpublished.sign(&valid), "invalid token"),
        // An ES256 signature presented under the RSA key's kid.
        (
            "alg mismatch",
            ec.sign_as("rsa-1", &valid),
            "does not match its key",
        ),
        (
            "unknown kid",
            rsa.sign_as("rsa-404", &valid),
            "does not publish",
        ),
        (
            "no kid",
            rsa.sign_with(&Header::new(Algorithm::RS256), &valid),
            "no signing key",
        ),
        (
            "alg none",
            unsigned_token(&json!({"alg": "none", "kid": "rsa-1"}), &valid),
            "invalid token",
        ),
    ];
    // Algorithm confusion: HS256 "signed" with the provider's public key material, as
    // a verifier that takes a key's bytes for an HMAC secret would accept.
    for secret in [
        rsa.jwk["n"]
            .as_str()
            .unwrap_or_default()
            .as_bytes()
            .to_vec(),
        rsa.jwk.to_string().into_bytes(),
        provider_document(&provider).await.into_bytes(),
    ] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-1".to_owned());
        let token = jsonwebtoken::encode(&header, &valid, &EncodingKey::from_secret(&secret))
            .unwrap_or_else(|e| panic!("HS256: {e}"));
        cases.push(("HS256 with the public key", token, "invalid token"));
    }
    for (case, token, says) in cases {
        let (status, code, message) = refusal(&app, &token).await;
        assert_eq!((status, code.as_str()), (401, "UNAUTHENTICATED"), "{case}");
        assert!(message.contains(says), "{case}: {message}");
    }
}

#[tokio::test]
async fn without_a_provider_asymmetric_tokens_are_refused() {
    let rsa = SigningKey::rsa("rsa-1");
    let app = spawn_app().await;
    let token = rsa.sign(&roles_claims(
        "default",
        &["ADMIN"],
        json!({"role": "ADMIN"}),
    ));
    let (status, code, _) = refusal(&app, &token).await;
    assert_eq!((status, code.as_str()), (401, "UNAUTHENTICATED"));
}

#[tokio::test]
async fn a_rotated_key_is_accepted_once_the_set_is_fetched_again_and_a_withdrawn_one_is_not() {
    let (old, new) = (SigningKey::rsa("2026-11"), SigningKey::ec("2026-12"));
    let provider = FakeProvider::start(&[&old]).await;
    let app = spawn_trusting(&provider, |identity| identity.jwt_jwks_min_interval = 1).await;
    let staff = roles_claims("default", &["shop-staff"], json!({}));
    assert!(accepted(&app, &old.sign(&staff)).await);
    let before = provider.fetches();

    provider.publish(&[&new]);
    // The unknown kid fetches the set again as soon as the minimum interval allows.
    let token = new.sign(&staff);
    assert!(
        eventually(Duration::from_secs(10), || accepted(&app, &token)).await,
        "the new key was never accepted"
    );
    assert!(provider.fetches() > before);
    // The provider withdrew the old key with that fetch: its tokens stop working.
    let (status, _, message) = refusal(&app, &old.sign(&staff)).await;
    assert_eq!(status, 401);
    assert!(message.contains("does not publish"), "{message}");
}

#[tokio::test]
async fn the_set_is_refreshed_when_its_max_age_runs_out() {
    let (kept, withdrawn) = (SigningKey::ec("kept"), SigningKey::ec("withdrawn"));
    let provider = FakeProvider::start(&[&kept, &withdrawn]).await;
    provider.set_cache_control("public, max-age=1");
    // JWT_JWKS_TTL would keep the set an hour: max-age is what makes it refresh.
    let app = spawn_trusting(&provider, |identity| {
        identity.jwt_jwks_min_interval = 1;
        identity.jwt_jwks_ttl = 3600;
    })
    .await;
    let staff = roles_claims("default", &["shop-staff"], json!({}));
    let withdrawn_token = withdrawn.sign(&staff);
    assert!(accepted(&app, &withdrawn_token).await);
    provider.publish(&[&kept]);
    // Known kids never trigger a fetch; the stale set is refreshed in the background
    // while the cached key still answers, then the withdrawn key is gone.
    assert!(
        eventually(Duration::from_secs(10), || async {
            !accepted(&app, &withdrawn_token).await
        })
        .await,
        "the set was never refreshed"
    );
    assert!(accepted(&app, &kept.sign(&staff)).await);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_costs_the_provider_a_bounded_number_of_fetches() {
    let rsa = SigningKey::rsa("rsa-1");
    let provider = FakeProvider::start(&[&rsa]).await;
    let app = spawn_trusting(&provider, |identity| identity.jwt_jwks_min_interval = 30).await;
    let staff = roles_claims("default", &["shop-staff"], json!({}));
    let valid = rsa.sign(&staff);
    assert!(accepted(&app, &valid).await);
    let before = provider.fetches();

    // 20 waves of 10 at once: concurrent ones share a fetch, and the minimum interval
    // bounds the waves that follow.
    let mut answers = Vec::new();
    for _ in 0..20 {
        let wave = (0..10).map(|_| {
            let token = rsa.sign_as(&format!("{:016x}", rand::random::<u64>()), &staff);
            let app = app.clone();
            async move { refusal(&app, &token).await }
        });
        answers.extend(futures_util::future::join_all(wave).await);
    }
    assert_eq!(answers.len(), 200);
    for (status, code, message) in &answers {
        assert_eq!((*status, code.as_str()), (401, "UNAUTHENTICATED"));
        assert!(message.contains("does not publish"), "{message}");
    }
    // At most one fetch per minimum interval, however many unknown kids arrive.
    let during = provider.fetches() - before;
    eprintln!("{during} JWKS fetches for 200 unknown kids");
    assert!(during <= 1, "{during} fetches for 200 unknown kids");
    assert!(accepted(&app, &valid).await);
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_provider_is_down() {
    let (cached, unseen) = (SigningKey::rsa("cached"), SigningKey::ec("unseen"));
    let provider = FakeProvider::start(&[&cached]).await;
    provider.set_cache_control("max-age=1");
    let app = spawn_trusting(&provider, |identity| identity.jwt_jwks_min_interval = 1).await;
    let staff = roles_claims("default", &["shop-staff"], json!({}));
    let token = cached.sign(&staff);
    assert!(accepted(&app, &token).await);

    provider.set_down(true);
    provider.publish(&[&cached, &unseen]);
    let down_at = provider.fetches();
    // Refreshes fail (503) once the set is stale; every request meanwhile is answered
    // with the cached key.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while provider.fetches() < down_at + 2 {
        assert!(
            accepted(&app, &token).await,
            "a cached key was refused while the provider was down"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refresh was attempted while the provider was down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(accepted(&app, &token).await);
    let (status, code, message) = refusal(&app, &unseen.sign(&staff)).await;
    assert_eq!((status, code.as_str()), (401, "UNAUTHENTICATED"));
    assert!(message.contains("does not publish"), "{message}");

    // Back up: the key it published meanwhile is fetched and accepted.
    provider.set_down(false);
    let unseen_token = unseen.sign(&staff);
    assert!(eventually(Duration::from_secs(10), || accepted(&app, &unseen_token)).await);
}

#[tokio::test]
async fn a_provider_that_is_down_at_start_does_not_stop_the_server() {
    let rsa = SigningKey::rsa("rsa-1");
    let provider = FakeProvider::start(&[&rsa]).await;
    provider.set_down(true);
    let mut settings = test_settings().await;
    settings.identity = identity(&provider);
    settings.identity.jwt_jwks_min_interval = 1;
    let app = spawn_with(settings).await;
    // Catalog reads and our own tokens work; the provider's are refused until it is up.
    assert!(accepted(&app, &app.staff()).await);
    let token = rsa.sign(&roles_claims("default", &["shop-staff"], json!({})));
    let (status, _, _) = refusal(&app, &token).await;
    assert_eq!(status, 401);
    provider.set_down(false);
    assert!(eventually(Duration::from_secs(10), || accepted(&app, &token)).await);
}

#[tokio::test]
async fn a_websocket_opened_with_a_provider_token_acts_as_its_principal() {
    let ec = SigningKey::ec("ec-1");
    let provider = FakeProvider::start(&[&ec]).await;
    let app = spawn_trusting(&provider, |_| {}).await;
    app.create_customer("Ana", "ana@example.com").await;
    let staff = ec.sign(&roles_claims("default", &["shop-staff"], json!({})));
    let mut socket = Socket::ready(&app, Some(&staff)).await;
    socket
        .subscribe("1", "{ customers { totalCount } }", json!({}))
        .await;
    let listed = socket.next_message().await;
    assert_eq!(
        listed["payload"]["data"]["customers"]["totalCount"], 1,
        "{listed}"
    );
    // A token with a kid the provider does not publish opens nothing.
    let mut refused = Socket::open(&app).await;
    let unknown = ec.sign_as(
        "ec-404",
        &roles_claims("default", &["shop-staff"], json!({})),
    );
    refused
        .send(json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {unknown}")}}))
        .await;
    loop {
        match refused.next().await {
            Heard::Message(message) => {
                assert_ne!(message["type"], "connection_ack", "{message}");
            }
            Heard::Ping => {}
            Heard::Close(code) => break assert!(code.is_some()),
            Heard::Gone => panic!("the socket ended without a close frame"),
        }
    }
}

/// `header.claims.` with an empty signature, base64url-encoded as a JWT.
fn unsigned_token(header: &serde_json::Value, claims: &serde_json::Value) -> String {
    use base64::Engine;
    let encode = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!("{}.{}.", encode(header), encode(claims))
}

/// The JWKS document exactly as the provider serves it.
async fn provider_document(provider: &FakeProvider) -> String {
    reqwest::get(provider.url())
        .await
        .unwrap_or_else(|e| panic!("GET the JWKS: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("JWKS body: {e}"))
}

#[test]
fn test_tokens_carry_the_provider_issuer_and_audience() {
    let claims = claims(json!({"sub": "x"}));
    assert_eq!(claims["iss"], crate::identity_helpers::ISSUER);
    assert_eq!(claims["aud"], crate::identity_helpers::AUDIENCE);
    assert_eq!(claims["sub"], "x");
}
