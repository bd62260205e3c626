use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "release_requests")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub environment_id: Uuid,
    pub phone_number_id: Uuid,
    pub phone_number: String,
    #[sea_orm(column_type = "Text")]
    pub reason: String,
    pub status: String,
    pub requested_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
    pub released_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub review_note: Option<String>,
    pub reviewed_by: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
