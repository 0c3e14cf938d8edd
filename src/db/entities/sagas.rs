use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sagas")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: String,
    pub kind: String,
    pub status: String,
    pub customer_id: i64,
    pub order_id: Option<i64>,
    pub payload: String,
    pub error: Option<String>,
    pub idempotency_key: Option<String>,
    pub lease_until: Option<i64>,
    pub attempts: i32,
    pub fence: i64,
    pub request_id: Option<String>,
    pub request_hash: Option<String>,
    pub cancels_order_id: Option<i64>,
    pub dead_lettered_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
