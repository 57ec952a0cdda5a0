//! Accounts and bearer tokens. Passwords arrive already hashed (argon2) and tokens as their
//! SHA-256: the store never sees a secret.

use super::{
    connection::ServerConnection,
    db_error,
    schema::{accounts, auth_tokens},
};
use diesel::{
    prelude::*,
    result::{DatabaseErrorKind, Error as DieselError},
};
use trackflow_domain::{
    ports::{Account, ServerStoreError, StoredToken},
    Timestamp, UserId,
};

#[derive(Queryable, Insertable)]
#[diesel(table_name = accounts)]
struct AccountRow {
    user_id: String,
    email: String,
    password_hash: String,
    created_at: i64,
}

pub(super) fn create(conn: &mut ServerConnection, account: &Account) -> Result<(), ServerStoreError> {
    let row = AccountRow {
        user_id: account.user_id.to_string(),
        email: account.email.clone(),
        password_hash: account.password_hash.clone(),
        created_at: account.created_at.as_millis(),
    };
    match diesel::insert_into(accounts::table).values(&row).execute(conn) {
        Ok(_) => Ok(()),
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            Err(ServerStoreError::Taken("an account with this email or user id already exists".into()))
        }
        Err(e) => Err(db_error(e)),
    }
}

pub(super) fn find(conn: &mut ServerConnection, email: &str) -> Result<Option<Account>, ServerStoreError> {
    let row: Option<AccountRow> =
        accounts::table.filter(accounts::email.eq(email)).get_result(conn).optional().map_err(db_error)?;
    row.map(|row| {
        Ok(Account {
            user_id: parse_user(&row.user_id)?,
            email: row.email,
            password_hash: row.password_hash,
            created_at: Timestamp(row.created_at),
        })
    })
    .transpose()
}

pub(super) fn save_token(conn: &mut ServerConnection, token: &StoredToken) -> Result<(), ServerStoreError> {
    diesel::insert_into(auth_tokens::table)
        .values((
            auth_tokens::token_hash.eq(&token.token_hash),
            auth_tokens::user_id.eq(token.user_id.to_string()),
            auth_tokens::expires_at.eq(token.expires_at.as_millis()),
        ))
        .execute(conn)
        .map_err(db_error)?;
    Ok(())
}

pub(super) fn user_for_token(
    conn: &mut ServerConnection,
    token_hash: &str,
    now: Timestamp,
) -> Result<Option<UserId>, ServerStoreError> {
    let user: Option<String> = auth_tokens::table
        .find(token_hash)
        .filter(auth_tokens::expires_at.gt(now.as_millis()))
        .select(auth_tokens::user_id)
        .get_result(conn)
        .optional()
        .map_err(db_error)?;
    user.as_deref().map(parse_user).transpose()
}

pub(super) fn revoke_token(conn: &mut ServerConnection, token_hash: &str) -> Result<(), ServerStoreError> {
    diesel::delete(auth_tokens::table.find(token_hash)).execute(conn).map_err(db_error)?;
    Ok(())
}

fn parse_user(text: &str) -> Result<UserId, ServerStoreError> {
    text.parse().map_err(|e| super::storage_error(trackflow_db::error::StoreError::corrupt("accounts", e)))
}
