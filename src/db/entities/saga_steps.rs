use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "saga_steps")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub saga_id: i64,
    pub position: i32,
    pub name: String,
    pub status: String,
    pub attempts: i32,
    pub error: Option<String>,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
