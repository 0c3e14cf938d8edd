//! The saga's vocabulary: kinds, statuses, step names, and the payload a saga carries
//! from acceptance to its last step.
use serde::{Deserialize, Serialize};

macro_rules! stored_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, async_graphql::Enum, Serialize, Deserialize)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            pub fn parse(raw: &str) -> Option<Self> {
                match raw { $($text => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}

stored_enum!(
    /// What a saga does.
    SagaKind { Checkout => "CHECKOUT", CancelOrder => "CANCEL_ORDER" }
);
stored_enum!(
    /// Where a saga is.
    SagaStatus {
        Pending => "PENDING",
        Running => "RUNNING",
        Compensating => "COMPENSATING",
        Completed => "COMPLETED",
        Compensated => "COMPENSATED",
        Failed => "FAILED",
    }
);
stored_enum!(
    /// A step of a saga.
    SagaStepName { ReserveStock => "RESERVE_STOCK", ChargePayment => "CHARGE_PAYMENT", CreateOrder => "CREATE_ORDER" }
);
stored_enum!(
    /// Where a step is.
    StepStatus {
        Pending => "PENDING",
        Running => "RUNNING",
        Succeeded => "SUCCEEDED",
        Failed => "FAILED",
        Compensating => "COMPENSATING",
        Compensated => "COMPENSATED",
    }
);
stored_enum!(
    /// How a customer pays.
    PaymentMethod { Card => "CARD", Paypal => "PAYPAL", BankTransfer => "BANK_TRANSFER" }
);
stored_enum!(
    /// Where an order is.
    OrderStatus { Pending => "PENDING", Completed => "COMPLETED", Cancelled => "CANCELLED" }
);

impl SagaStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Compensated | Self::Failed)
    }
}

impl SagaKind {
    /// The steps a saga of this kind runs, in order. A cancellation runs the checkout's
    /// steps backwards: cancel the order, refund, restock.
    pub fn steps(self) -> &'static [SagaStepName] {
        match self {
            Self::Checkout => &[
                SagaStepName::ReserveStock,
                SagaStepName::ChargePayment,
                SagaStepName::CreateOrder,
            ],
            Self::CancelOrder => &[
                SagaStepName::CreateOrder,
                SagaStepName::ChargePayment,
                SagaStepName::ReserveStock,
            ],
        }
    }
}

/// One line of a checkout, with the price snapshot taken when it was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub product_id: i64,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

/// What a saga needs to run, stored as JSON in its row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    pub lines: Vec<Line>,
    pub payment_method: PaymentMethod,
    pub payment_token: Option<String>,
    /// Clear the customer's cart when the order is created (checkout from the cart).
    pub clear_cart: bool,
    /// For a cancellation: the checkout saga whose order is cancelled.
    pub cancels_saga: Option<i64>,
    /// The W3C `traceparent` of the request that placed it, so its steps join that
    /// trace (only with traces on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

impl Payload {
    pub fn total_cents(&self) -> i64 {
        self.lines
            .iter()
            .map(|l| l.unit_price_cents.saturating_mul(i64::from(l.quantity)))
            .fold(0, i64::saturating_add)
    }
}
