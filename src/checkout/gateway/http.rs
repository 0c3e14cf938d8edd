//! A provider reached over HTTP, speaking the simulator's API (`shopgraph gateway`).
//! Anything but a clear answer (a timeout, a lost connection, a 5xx) is `Unknown`: the
//! worker asks again later with the same key.
use super::{Charge, ChargeRequest, PaymentGateway, Refund, RefundRequest, Unknown};
use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

pub struct HttpGateway {
    base: String,
    client: reqwest::Client,
}

impl HttpGateway {
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            client,
        })
    }

    async fn post<B: Serialize + Sync, T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        body: &B,
    ) -> Result<T, Unknown> {
        let unknown = |e: reqwest::Error| Unknown(e.without_url().to_string());
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .map_err(unknown)?;
        if !response.status().is_success() {
            return Err(Unknown(format!(
                "the provider answered {}",
                response.status()
            )));
        }
        response.json().await.map_err(unknown)
    }
}

#[async_trait]
impl PaymentGateway for HttpGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, Unknown> {
        self.post("/v1/charges", &request.key, request).await
    }

    async fn refund(&self, request: &RefundRequest) -> Result<Refund, Unknown> {
        self.post("/v1/refunds", &request.key, request).await
    }
}
