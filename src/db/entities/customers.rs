use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "customers")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: String,
    pub name: String,
    pub email: String,
    pub created_at: DateTimeUtc,
    /// A guest shopper's record (see `services::cart::guest`): never signs in; its
    /// e-mail, given at checkout, is not unique.
    pub guest: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

/// A customer's password lives in a table of its own, read only by sign-in.
impl Related<super::customer_passwords::Entity> for Entity {
    fn to() -> RelationDef {
        super::customer_passwords::Relation::Customer.def().rev()
    }
}

impl ActiveModelBehavior for ActiveModel {}
