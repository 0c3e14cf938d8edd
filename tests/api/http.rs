use crate::helpers::{error_code, spawn_app};
use serde_json::{Value, json};

#[tokio::test]
async fn health_endpoints_report_database_and_cache() {
    let app = spawn_app().await;
    let live = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(live.status(), 200);
    let ready = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ready.status(), 200);
    let health: Value = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"], "ok");
    assert_eq!(health["cache"], "ok");
    assert_eq!(
        health["instance"],
        app.settings.instance_id.clone().unwrap_or_default()
    );
    let cache: Value = app
        .client
        .get(app.url("/health/cache"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(cache["status"], "ok");
    let whoami: Value = app
        .client
        .get(app.url("/whoami"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(whoami["instance"], health["instance"]);
}

#[tokio::test]
async fn graphql_over_http_status_codes_and_media_types() {
    let app = spawn_app().await;
    let url = app.url("/graphql");
    let ok = app
        .client
        .post(&url)
        .header("accept", "application/graphql-response+json")
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.status(), 200);
    assert!(
        ok.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("application/graphql-response+json")
    );

    let invalid = app
        .client
        .post(&url)
        .header("accept", "application/graphql-response+json")
        .json(&json!({"query": "{ noSuchField }"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(invalid.status(), 400);
    let unparsable = app
        .client
        .post(&url)
        .header("accept", "application/graphql-response+json")
        .json(&json!({"query": "{ products { "}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unparsable.status(), 400);
    // Legacy clients asking for application/json get 200 with the errors.
    let legacy = app
        .client
        .post(&url)
        .header("accept", "application/json")
        .json(&json!({"query": "{ noSuchField }"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(legacy.status(), 200);
    assert!(
        legacy.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("application/json")
    );

    let get = app
        .client
        .get(format!("{url}?query=%7B__typename%7D"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(get.status(), 200);
    let body: Value = get.json().await.unwrap_or_default();
    assert_eq!(body["data"]["__typename"], "Query");

    let mutation_by_get = app
        .client
        .get(format!("{url}?query=mutation%7BclearCart%7Bid%7D%7D"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mutation_by_get.status(), 405);

    let unacceptable = app
        .client
        .post(&url)
        .header("accept", "text/html")
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unacceptable.status(), 406);

    let not_json = app
        .client
        .post(&url)
        .header("content-type", "text/plain")
        .body("{ __typename }")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(not_json.status(), 415);
}

#[tokio::test]
async fn internal_errors_never_leak_sql() {
    let app = spawn_app().await;
    let id = app.create_product("P", "P", "1.00", 1).await;
    // An id beyond i64 is refused as input, before any SQL runs.
    let body = app
        .gql(
            None,
            "{ product(id: \"99999999999999999999999\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    let text = body.to_string().to_lowercase();
    assert!(!text.contains("select") && !text.contains("sqlx"), "{text}");
    assert!(!id.is_empty());
}

#[tokio::test]
async fn the_playground_is_served_from_the_binary() {
    let app = spawn_app().await;
    for (path, kind) in [
        ("/playground", "text/html"),
        ("/playground/shop", "text/html"),
        ("/playground/assets/graphiql.js", "text/javascript"),
        ("/playground/assets/graphiql.css", "text/css"),
    ] {
        let response = app
            .client
            .get(app.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), 200, "{path}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
    }
    let missing = app
        .client
        .get(app.url("/playground/assets/nope.js"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(missing.status(), 404);
}

#[test]
fn committed_schema_matches_the_code() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .unwrap_or_default();
    assert!(
        committed == shopgraph::graphql::schema::sdl(),
        "schema.graphql is out of date: run `cargo run -- export-schema`"
    );
}

/// The query GraphiQL (graphql-js `getIntrospectionQuery`) sends to learn the schema.
const INTROSPECTION: &str = "query IntrospectionQuery { __schema { queryType { name } mutationType { name } subscriptionType { name } types { ...FullType } directives { name description locations args { ...InputValue } } } }
fragment FullType on __Type { kind name description fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason } inputFields { ...InputValue } interfaces { ...TypeRef } enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason } possibleTypes { ...TypeRef } }
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } } }";

#[tokio::test]
async fn the_playground_introspection_query_passes_the_query_limits() {
    let app = spawn_app().await;
    let body = app.gql(None, INTROSPECTION, json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    let types = body["data"]["__schema"]["types"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert!(types > 30, "{types} types");
    assert_eq!(
        body["data"]["__schema"]["subscriptionType"]["name"],
        "Subscription"
    );
}
