use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "orders")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: String,
    pub customer_id: i64,
    pub saga_id: i64,
    pub status: String,
    pub total_cents: i64,
    pub payment_method: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// When it completed (charged); kept when it is cancelled later.
    pub completed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
