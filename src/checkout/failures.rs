//! Failure injection: `SAGA_FAIL_RATE_<STEP>` makes a checkout step fail with that
//! probability (as the seed's failure injection did), to exercise compensations.
use super::model::SagaStepName;
use crate::db::entities::sagas;
use sha2::{Digest, Sha256};

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

    /// Whether `saga` fails `step`. The draw is decided by the saga (its request id)
    /// and the step, not by the attempt: every attempt, by any worker, decides alike,
    /// as a real fault would (a decision that flipped between a lost answer and its
    /// retry could charge an order it had cancelled).
    pub fn should_fail(&self, step: SagaStepName, saga: &sagas::Model) -> bool {
        let rate = match step {
            SagaStepName::ReserveStock => self.reserve_stock,
            SagaStepName::ChargePayment => self.charge_payment,
            SagaStepName::CreateOrder => self.create_order,
        };
        if rate <= 0.0 {
            return false;
        }
        let mut hasher = Sha256::new();
        match &saga.request_id {
            Some(request) => hasher.update(request.as_bytes()),
            None => hasher.update(saga.id.to_le_bytes()),
        }
        hasher.update(step.as_str().as_bytes());
        let digest = hasher.finalize();
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        #[allow(clippy::cast_precision_loss)]
        let draw = u64::from_le_bytes(head) as f64 / u64::MAX as f64;
        draw < rate
    }
}
