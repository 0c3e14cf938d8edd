//! The simulated payment gateway and failure injection. `tok_declined` declines;
//! `SAGA_FAIL_RATE_<STEP>` makes a step fail with that probability (as the seed's
//! failure injection did), to exercise compensations.
use super::model::SagaStepName;
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct FailureRates {
    pub reserve_stock: f64,
    pub charge_payment: f64,
    pub create_order: f64,
}

impl FailureRates {
    /// Reads `SAGA_FAIL_RATE_RESERVE_STOCK`, `…_CHARGE_PAYMENT`, `…_CREATE_ORDER` (0 to 1).
    pub fn from_env() -> anyhow::Result<Self> {
        let read = |step: SagaStepName| -> anyhow::Result<f64> {
            let name = format!("SAGA_FAIL_RATE_{}", step.as_str());
            match std::env::var(&name) {
                Err(_) => Ok(0.0),
                Ok(raw) => match raw.trim().parse::<f64>() {
                    Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
                    _ => anyhow::bail!("{name} must be a probability between 0 and 1, got '{raw}'"),
                },
            }
        };
        Ok(Self {
            reserve_stock: read(SagaStepName::ReserveStock)?,
            charge_payment: read(SagaStepName::ChargePayment)?,
            create_order: read(SagaStepName::CreateOrder)?,
        })
    }

    pub fn should_fail(&self, step: SagaStepName) -> bool {
        let rate = match step {
            SagaStepName::ReserveStock => self.reserve_stock,
            SagaStepName::ChargePayment => self.charge_payment,
            SagaStepName::CreateOrder => self.create_order,
        };
        rate > 0.0 && rand::random::<f64>() < rate
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charge {
    Captured,
    Declined(String),
}

#[derive(Debug, Clone, Default)]
pub struct Gateway {
    pub latency: Duration,
}

impl Gateway {
    /// Decides a charge. No money moves: the payment row written in the same
    /// transaction as the step is the record, so a retried step never charges twice.
    pub async fn charge(&self, token: Option<&str>, amount_cents: i64) -> Charge {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        match token {
            Some("tok_declined") => Charge::Declined("payment declined by the card issuer".into()),
            _ if amount_cents <= 0 => Charge::Declined("nothing to charge".into()),
            _ => Charge::Captured,
        }
    }
}
