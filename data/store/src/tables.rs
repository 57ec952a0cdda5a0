//! The entity tables, worked on through each type's declaration: one implementation for every
//! synced type, with no Diesel schema of its own.
//!
//! A type's table has `id`, one column per declared field, and the sync metadata columns
//! (`version`, `field_hlc`, `deleted`, `dirty`, `pending_create`, `pulled_version`; `dirty`
//! holds how many outbox operations on the row wait, [`SyncMeta::queued`]). Its
//! statements are written once per type from the declaration ([`TableSql`]) and run as
//! [`Statement`]s: Diesel caches each prepared statement by its text, as it does for the
//! statements its query builder makes. A write binds each field to its column ([`Column`]); a
//! read gets the columns back as one object from `json_object`, which the type's validating
//! `from_fields` decodes.

use super::{
    field_clock,
    rows::{parse, Record},
};
use diesel::{
    query_builder::{AstPass, Query, QueryFragment, QueryId},
    result::Error as DieselError,
    sql_types::{BigInt, Bool, Double, Nullable, Text, Untyped},
    sqlite::Sqlite,
    QueryResult, QueryableByName, RunQueryDsl, SqliteConnection,
};
use serde_json::Value;
use std::{
    collections::{BTreeMap, HashMap},
    sync::OnceLock,
};
use trackflow_db::error::{StoreError, StoreResult};
use trackflow_domain::{
    entities::{AnyEntity, Registry},
    EntityType, OperationKind, SyncMeta,
};
use uuid::Uuid;

/// One value bound to a [`Statement`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Bind<'a> {
    /// A text.
    Text(&'a str),
    /// A text or NULL.
    OptText(Option<&'a str>),
    /// An integer.
    BigInt(i64),
    /// A real number.
    Double(f64),
    /// A flag.
    Bool(bool),
}

/// A statement whose text was made from a type's declaration: each `?` takes the next bind.
/// Diesel caches it by its text like any statement it builds.
pub(crate) struct Statement<'a> {
    sql: &'a str,
    binds: Vec<Bind<'a>>,
}

impl<'a> Statement<'a> {
    pub fn new(sql: &'a str, binds: Vec<Bind<'a>>) -> Self {
        Self { sql, binds }
    }
}

impl QueryId for Statement<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Statement<'_> {
    type SqlType = Untyped;
}

impl RunQueryDsl<SqliteConnection> for Statement<'_> {}

impl QueryFragment<Sqlite> for Statement<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        let mut binds = self.binds.iter();
        for (i, part) in self.sql.split('?').enumerate() {
            if i > 0 {
                match binds.next() {
                    Some(Bind::Text(text)) => out.push_bind_param::<Text, str>(text)?,
                    Some(Bind::OptText(text)) => out.push_bind_param::<Nullable<Text>, Option<&str>>(text)?,
                    Some(Bind::BigInt(n)) => out.push_bind_param::<BigInt, i64>(n)?,
                    Some(Bind::Double(x)) => out.push_bind_param::<Double, f64>(x)?,
                    Some(Bind::Bool(b)) => out.push_bind_param::<Bool, bool>(b)?,
                    None => {
                        return Err(DieselError::QueryBuilderError("a placeholder without a bind".into()))
                    }
                }
            }
            out.push_sql(part);
        }
        match binds.next() {
            Some(_) => Err(DieselError::QueryBuilderError("more binds than placeholders".into())),
            None => Ok(()),
        }
    }
}

/// A row as a read returns it: the fields as one JSON object, then the sync metadata.
#[derive(Debug, QueryableByName)]
pub(crate) struct StoredRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub fields: String,
    #[diesel(sql_type = BigInt)]
    pub version: i64,
    #[diesel(sql_type = Text)]
    pub field_hlc: String,
    #[diesel(sql_type = Bool)]
    pub deleted: bool,
    /// [`SyncMeta::queued`] (the column's name is from when it was a flag).
    #[diesel(sql_type = BigInt)]
    pub dirty: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub pending_create: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub pulled_version: i64,
}

impl StoredRow {
    /// The row's fields, as the wire carries them.
    pub fn fields(&self, table: &'static str) -> StoreResult<BTreeMap<String, Value>> {
        serde_json::from_str(&self.fields).map_err(|e| StoreError::corrupt(table, e))
    }

    /// The record of `entity_type`, decoded through the type's validation: a row that breaks a
    /// domain rule is [`StoreError::Corrupt`], never an invalid entity.
    pub fn decode(self, entity_type: EntityType) -> StoreResult<Record<AnyEntity>> {
        let table = entity_type.table();
        let id: Uuid = parse(table, &self.id)?;
        let entity = AnyEntity::from_fields(entity_type, id, &self.fields(table)?)
            .map_err(|e| StoreError::corrupt(table, e))?;
        let meta = SyncMeta {
            version: self.version,
            // The declared field names, not `entity.fields()`: no serialising on every read.
            field_hlc: field_clock::decode_row(table, &self.field_hlc, entity_type.fields())?,
            deleted: self.deleted,
            queued: u32::try_from(self.dirty).map_err(|e| StoreError::corrupt(table, e))?,
            pending_create: self.pending_create.as_deref().map(|id| parse(table, id)).transpose()?,
            pulled_version: self.pulled_version,
        };
        Ok(Record { entity, meta })
    }
}

/// One field's value as its column stores it. A string is text and a number an integer or a
/// real; a JSON field (an array, an object, a flag: [`EntityType::json_fields`]) is its JSON
/// text, and so is an array or object in any other field; a flag in a plain field is 1 or 0;
/// null and an absent field are NULL.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Column {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
}

impl Column {
    fn of(value: Option<&Value>, json: bool) -> Self {
        match value {
            None | Some(Value::Null) => Self::Null,
            Some(value) if json => Self::Text(value.to_string()),
            Some(Value::String(text)) => Self::Text(text.clone()),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(n) => Self::Integer(n),
                None => Self::Real(n.as_f64().unwrap_or(f64::NAN)),
            },
            Some(Value::Bool(flag)) => Self::Integer(i64::from(*flag)),
            Some(other) => Self::Text(other.to_string()),
        }
    }

    fn bind(&self) -> Bind<'_> {
        match self {
            Self::Null => Bind::OptText(None),
            Self::Integer(n) => Bind::BigInt(*n),
            Self::Real(x) => Bind::Double(*x),
            Self::Text(text) => Bind::Text(text),
        }
    }
}

/// A record ready to be written: one column per declared field, then the metadata columns.
#[derive(Debug, Clone)]
pub(crate) struct EncodedRow {
    id: String,
    fields: Vec<Column>,
    version: i64,
    field_hlc: String,
    deleted: bool,
    queued: i64,
    pending_create: Option<String>,
    pulled_version: i64,
}

impl EncodedRow {
    /// `record` ready to be written.
    pub fn encode(record: &Record<AnyEntity>) -> StoreResult<Self> {
        let fields = record.entity.fields();
        Self::with_fields(record, |name| fields.get(name))
    }

    /// `record` ready to be written, its entity's wire fields already at hand: `field` gives
    /// the value of the field it is named.
    pub fn with_fields<'v>(
        record: &Record<AnyEntity>,
        field: impl Fn(&str) -> Option<&'v Value>,
    ) -> StoreResult<Self> {
        let entity_type = record.entity.entity_type();
        let json = entity_type.json_fields();
        Ok(Self {
            id: record.entity.entity_id().to_string(),
            fields: entity_type.fields().iter().map(|f| Column::of(field(f), json.contains(f))).collect(),
            version: record.meta.version,
            field_hlc: field_clock::encode_row(entity_type.table(), &record.meta.field_hlc)?,
            deleted: record.meta.deleted,
            queued: i64::from(record.meta.queued),
            pending_create: record.meta.pending_create.map(|id| id.to_string()),
            pulled_version: record.meta.pulled_version,
        })
    }

    /// The binds of its field columns, in declared order.
    fn field_binds(&self) -> impl Iterator<Item = Bind<'_>> {
        self.fields.iter().map(Column::bind)
    }

    /// The binds after the fields, in the order of [`META_COLUMNS`].
    fn meta_binds(&self) -> [Bind<'_>; 6] {
        [
            Bind::BigInt(self.version),
            Bind::Text(&self.field_hlc),
            Bind::Bool(self.deleted),
            Bind::BigInt(self.queued),
            Bind::OptText(self.pending_create.as_deref()),
            Bind::BigInt(self.pulled_version),
        ]
    }
}

/// The sync metadata columns every entity table ends with.
const META_COLUMNS: [&str; 6] =
    ["version", "field_hlc", "deleted", "dirty", "pending_create", "pulled_version"];

/// Rows inserted by one statement, most first: each size is one cached statement.
const INSERT_SIZES: [usize; 3] = [64, 8, 1];

/// The statements of one type's table, written once from its declaration.
pub(crate) struct TableSql {
    pub table: &'static str,
    find: String,
    inserts: [String; 3],
    save: String,
    presence: String,
    existing: String,
    reset_pulled: String,
    unpulled: String,
    remove: String,
    unpull: String,
    drop_unacknowledged: String,
    settle: String,
    list_all: String,
    list_inside: Option<String>,
    /// By index name: the statement and how many times it binds the key.
    by_index: HashMap<&'static str, (String, usize)>,
    forget: String,
    forget_waiting: String,
    /// For a type that grants membership: the live grants of a scope to a user.
    grants: Option<String>,
}

impl TableSql {
    fn new(entity_type: EntityType) -> Self {
        let t = entity_type.table();
        let json = entity_type.json_fields();
        let fields = entity_type.fields();
        let object: Vec<String> = fields
            .iter()
            .map(|f| if json.contains(f) { format!("'{f}', json({f})") } else { format!("'{f}', {f}") })
            .collect();
        let columns =
            format!("id, json_object({}) AS fields, {}", object.join(", "), META_COLUMNS.join(", "));
        let order: Vec<&str> = entity_type.order().iter().copied().chain(["id"]).collect();
        let order = order.join(", ");
        let written: Vec<&str> =
            ["id"].into_iter().chain(fields.iter().copied()).chain(META_COLUMNS).collect();
        let row = format!("({})", vec!["?"; written.len()].join(", "));
        let insert = |n: usize| {
            format!("INSERT INTO {t} ({}) VALUES {}", written.join(", "), vec![row.as_str(); n].join(", "))
        };
        let save = format!(
            "UPDATE {t} SET {} WHERE id = ?",
            written[1..].iter().map(|c| format!("{c} = ?")).collect::<Vec<_>>().join(", ")
        );
        let parent_column = entity_type.parent().map_or("NULL", |p| p.field);
        let by_index = entity_type
            .indexes()
            .iter()
            .map(|index| {
                let mut matches = vec![format!("{} = ?", index.field)];
                if index.members {
                    // The grants of other types in this scope: their member field names the user.
                    for &grant in EntityType::all() {
                        if let (Some(member), true) = (grant.member_field(), grant != entity_type) {
                            matches.push(format!(
                                "id IN (SELECT {} FROM {} WHERE {member} = ? AND deleted = 0)",
                                grant.scope_field(),
                                grant.table()
                            ));
                        }
                    }
                }
                let sql = format!(
                    "SELECT {columns} FROM {t} WHERE deleted = 0 AND ({}) ORDER BY {order}",
                    matches.join(" OR ")
                );
                (index.name, (sql, matches.len()))
            })
            .collect();
        Self {
            table: t,
            find: format!("SELECT {columns} FROM {t} WHERE id = ?"),
            inserts: INSERT_SIZES.map(insert),
            save,
            presence: format!(
                "SELECT deleted, pending_create, {parent_column} AS parent FROM {t} WHERE id = ?"
            ),
            existing: format!("SELECT id FROM {t} WHERE id IN (SELECT value FROM json_each(?))"),
            reset_pulled: format!("UPDATE {t} SET pulled_version = 0"),
            unpulled: format!(
                "SELECT id AS value FROM {t} WHERE pulled_version = 0 AND dirty = 0 AND pending_create IS NULL"
            ),
            remove: format!("DELETE FROM {t} WHERE id = ?"),
            unpull: format!("UPDATE {t} SET pulled_version = 0, deleted = (deleted OR ?) WHERE id = ?"),
            drop_unacknowledged: format!("DELETE FROM {t} WHERE id = ? AND version = 0"),
            settle: format!(
                "UPDATE {t} SET version = max(version, ?), dirty = max(dirty - ?, 0), \
                 pending_create = CASE WHEN pending_create IN (SELECT value FROM json_each(?)) \
                 THEN NULL ELSE pending_create END WHERE id = ?"
            ),
            list_all: format!("SELECT {columns} FROM {t} WHERE deleted = 0 ORDER BY {order}"),
            list_inside: entity_type.parent().map(|p| {
                format!("SELECT {columns} FROM {t} WHERE {} = ? AND deleted = 0 ORDER BY {order}", p.field)
            }),
            by_index,
            grants: entity_type.member_field().map(|member| {
                format!(
                    "SELECT {columns} FROM {t} WHERE {} = ? AND {member} = ? AND deleted = 0",
                    entity_type.scope_field()
                )
            }),
            forget: format!("DELETE FROM {t} WHERE {} = ?", entity_type.scope_field()),
            forget_waiting: format!(
                "DELETE FROM sync_deferred WHERE parent_id IN (SELECT id FROM {t} WHERE {} = ?)",
                entity_type.scope_field()
            ),
        }
    }

    /// The statements of `entity_type`'s table.
    pub fn of(entity_type: EntityType) -> &'static TableSql {
        // A handful of types: finding one in a list costs less than hashing its name.
        static TABLES: OnceLock<Vec<(EntityType, TableSql)>> = OnceLock::new();
        TABLES
            .get_or_init(|| EntityType::all().iter().map(|&t| (t, TableSql::new(t))).collect())
            .iter()
            .find_map(|(t, sql)| (*t == entity_type).then_some(sql))
            .unwrap_or_else(|| {
                panic!("{entity_type} is not in the installed registry ({})", Registry::global())
            })
    }

    /// The row with `id`, tombstone or not.
    pub fn find(&self, conn: &mut SqliteConnection, id: Uuid) -> StoreResult<Option<StoredRow>> {
        let id = id.to_string();
        let mut rows: Vec<StoredRow> = Statement::new(&self.find, vec![Bind::Text(&id)]).load(conn)?;
        Ok(rows.pop())
    }

    /// Inserts `rows`, many to a statement.
    pub fn insert(&self, conn: &mut SqliteConnection, rows: &[EncodedRow]) -> StoreResult<()> {
        let mut rest = rows;
        for (size, sql) in INSERT_SIZES.iter().zip(&self.inserts) {
            let mut chunks = rest.chunks_exact(*size);
            for chunk in &mut chunks {
                let mut binds = Vec::with_capacity(chunk.len() * (7 + chunk[0].fields.len()));
                for row in chunk {
                    binds.push(Bind::Text(&row.id));
                    binds.extend(row.field_binds());
                    binds.extend(row.meta_binds());
                }
                Statement::new(sql, binds).execute(conn)?;
            }
            rest = chunks.remainder();
        }
        Ok(())
    }

    /// Overwrites the row `row` names.
    pub fn save(&self, conn: &mut SqliteConnection, row: &EncodedRow) -> StoreResult<()> {
        let mut binds: Vec<Bind<'_>> = row.field_binds().collect();
        binds.extend(row.meta_binds());
        binds.push(Bind::Text(&row.id));
        Statement::new(&self.save, binds).execute(conn)?;
        Ok(())
    }

    /// The row's tombstone flag, queued create and parent id (its declared parent field).
    pub fn presence(&self, conn: &mut SqliteConnection, id: Uuid) -> StoreResult<Option<PresenceRow>> {
        let id = id.to_string();
        let mut rows: Vec<PresenceRow> = Statement::new(&self.presence, vec![Bind::Text(&id)]).load(conn)?;
        Ok(rows.pop())
    }

    /// Which of `ids` (a JSON array) have a row, tombstones included.
    pub fn existing(&self, conn: &mut SqliteConnection, ids: &str) -> StoreResult<Vec<String>> {
        let rows: Vec<IdRow> = Statement::new(&self.existing, vec![Bind::Text(ids)]).load(conn)?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    /// Forgets what every row was last pulled at.
    pub fn reset_pulled(&self, conn: &mut SqliteConnection) -> StoreResult<()> {
        Statement::new(&self.reset_pulled, Vec::new()).execute(conn)?;
        Ok(())
    }

    /// The rows not pulled since [`reset_pulled`](Self::reset_pulled) that hold nothing of
    /// this device's own waiting to be sent.
    pub fn unpulled(&self, conn: &mut SqliteConnection) -> StoreResult<Vec<String>> {
        #[derive(QueryableByName)]
        struct Id {
            #[diesel(sql_type = Text)]
            value: String,
        }
        Ok(Statement::new(&self.unpulled, Vec::new())
            .load::<Id>(conn)?
            .into_iter()
            .map(|r| r.value)
            .collect())
    }

    /// Removes the row `id` (a row this device may no longer read).
    pub fn remove(&self, conn: &mut SqliteConnection, id: &str) -> StoreResult<()> {
        Statement::new(&self.remove, vec![Bind::Text(id)]).execute(conn)?;
        Ok(())
    }

    /// Forgets what the row `id` was last pulled at, so that the server's state of it applies
    /// again, and hides it if `hide`.
    pub fn unpull(&self, conn: &mut SqliteConnection, id: &str, hide: bool) -> StoreResult<()> {
        Statement::new(&self.unpull, vec![Bind::Bool(hide), Bind::Text(id)]).execute(conn)?;
        Ok(())
    }

    /// Removes the row if the server never acknowledged it (version 0). Returns whether it did.
    pub fn drop_unacknowledged(&self, conn: &mut SqliteConnection, id: &str) -> StoreResult<bool> {
        Ok(Statement::new(&self.drop_unacknowledged, vec![Bind::Text(id)]).execute(conn)? > 0)
    }

    /// Brings the row `id` up to date after `removed` (a JSON array of operation ids), its
    /// operations, left the outbox: its version raised to `version` (never lowered), its count of
    /// queued operations lowered by theirs, its queued create cleared if it is among them.
    pub fn settle(
        &self,
        conn: &mut SqliteConnection,
        id: &str,
        version: i64,
        removed: &[String],
    ) -> StoreResult<()> {
        let ids = serde_json::to_string(removed).map_err(|e| StoreError::corrupt(self.table, e))?;
        let count = i64::try_from(removed.len()).unwrap_or(i64::MAX);
        let binds = vec![Bind::BigInt(version), Bind::BigInt(count), Bind::Text(&ids), Bind::Text(id)];
        Statement::new(&self.settle, binds).execute(conn)?;
        Ok(())
    }

    /// Sets every row's count of queued writes from the outbox (the type named `name` there,
    /// uploads aside): once, for a file from before the counts were kept. One pass over the
    /// outbox, grouped by row, and one over the rows that counted before.
    pub fn recount_queued(&self, conn: &mut SqliteConnection, name: &str) -> StoreResult<()> {
        let t = self.table;
        Statement::new(&format!("UPDATE {t} SET dirty = 0 WHERE dirty != 0"), Vec::new()).execute(conn)?;
        let count = format!(
            "UPDATE {t} SET dirty = queued.n FROM (SELECT entity_id, count(*) AS n FROM pending_operations \
             WHERE entity_type = ? AND kind != ? GROUP BY entity_id) AS queued WHERE {t}.id = queued.entity_id"
        );
        Statement::new(&count, vec![Bind::Text(name), Bind::Text(OperationKind::Upload.as_str())])
            .execute(conn)?;
        Ok(())
    }

    /// Every live row, in the type's order.
    pub fn list_all(&self, conn: &mut SqliteConnection) -> StoreResult<Vec<StoredRow>> {
        Ok(Statement::new(&self.list_all, Vec::new()).load(conn)?)
    }

    /// The live rows inside `parent`; `None` for a type without a parent.
    pub fn list_inside(
        &self,
        conn: &mut SqliteConnection,
        parent: Uuid,
    ) -> Option<StoreResult<Vec<StoredRow>>> {
        let sql = self.list_inside.as_deref()?;
        let parent = parent.to_string();
        Some(Statement::new(sql, vec![Bind::Text(&parent)]).load(conn).map_err(StoreError::from))
    }

    /// The live rows `index` finds under `key`; `None` for an index the type lacks.
    pub fn list_by(
        &self,
        conn: &mut SqliteConnection,
        index: &str,
        key: Uuid,
    ) -> Option<StoreResult<Vec<StoredRow>>> {
        let (sql, keys) = self.by_index.get(index)?;
        let key = key.to_string();
        Some(Statement::new(sql, vec![Bind::Text(&key); *keys]).load(conn).map_err(StoreError::from))
    }

    /// The live rows granting scope `root` (the root's id) to `user`; `None` for a type that
    /// grants no membership.
    pub fn grants(
        &self,
        conn: &mut SqliteConnection,
        root: &str,
        user: &str,
    ) -> Option<StoreResult<Vec<StoredRow>>> {
        let sql = self.grants.as_deref()?;
        Some(
            Statement::new(sql, vec![Bind::Text(root), Bind::Text(user)])
                .load(conn)
                .map_err(StoreError::from),
        )
    }

    /// Removes the rows of scope `root` (the root's id) and the pulled rows waiting for one of
    /// them; returns how many rows went.
    pub fn forget(&self, conn: &mut SqliteConnection, root: &str) -> StoreResult<usize> {
        Statement::new(&self.forget_waiting, vec![Bind::Text(root)]).execute(conn)?;
        Ok(Statement::new(&self.forget, vec![Bind::Text(root)]).execute(conn)?)
    }
}

/// A row's tombstone flag, queued create and parent id, read without decoding the row.
#[derive(QueryableByName)]
pub(crate) struct PresenceRow {
    #[diesel(sql_type = Bool)]
    pub deleted: bool,
    #[diesel(sql_type = Nullable<Text>)]
    pub pending_create: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub parent: Option<String>,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = Text)]
    id: String,
}
