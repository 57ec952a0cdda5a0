//! Sign-up, log-in and log-out. Passwords are hashed with argon2id (its default, memory-hard
//! parameters); tokens are 256 random bits, and the store keeps only their SHA-256.

use crate::{
    error::ApiFailure,
    extract::{ApiJson, ApiQuery, AuthUser},
    AppState,
};
use argon2::{
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use axum::{extract::State, http::StatusCode, Json};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};
use trackflow_domain::{
    email_address,
    ports::{Account, StoredToken},
    protocol::{AccountQuery, AccountSummary, AuthResponse, LogInRequest, SignUpRequest},
    Timestamp, UserId,
};

/// Shortest accepted password, in characters.
pub(crate) const MIN_PASSWORD: usize = 8;
/// Longest accepted password, in bytes (hashing cost grows with it).
pub(crate) const MAX_PASSWORD: usize = 1024;

/// The current time.
pub(crate) fn now() -> Timestamp {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    Timestamp(i64::try_from(millis).unwrap_or(i64::MAX))
}

/// Hex SHA-256 of a bearer token: what the store keeps and looks up.
pub(crate) fn token_hash(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

async fn hash_password(password: String) -> Result<String, ApiFailure> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await
    .ok()
    .and_then(Result::ok)
    .ok_or_else(|| {
        ApiFailure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "could not hash the password")
    })
}

/// A hash of no one's password, made once, for log-ins with unknown emails.
async fn dummy_hash() -> Result<String, ApiFailure> {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DUMMY.get_or_try_init(|| hash_password("no account has this password".into())).await.cloned()
}

async fn password_matches(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// Mints and stores a token for `user`.
async fn issue_token(state: &AppState, user_id: UserId) -> Result<AuthResponse, ApiFailure> {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = URL_SAFE_NO_PAD.encode(secret);
    let ttl = i64::try_from(state.config.token_ttl.as_millis()).unwrap_or(i64::MAX);
    let expires_at = now().plus_millis(ttl);
    state.store.save_token(StoredToken { token_hash: token_hash(&token), user_id, expires_at }).await?;
    Ok(AuthResponse { user_id, token, expires_at })
}

fn check_password(password: &str) -> Result<(), ApiFailure> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(ApiFailure::invalid(
            "invalid_field",
            format!("password: must be at least {MIN_PASSWORD} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD {
        return Err(ApiFailure::invalid(
            "invalid_field",
            format!("password: must be at most {MAX_PASSWORD} bytes"),
        ));
    }
    Ok(())
}

/// `POST /v1/auth/signup`
pub(crate) async fn sign_up(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<SignUpRequest>,
) -> Result<(StatusCode, Json<AuthResponse>), ApiFailure> {
    let email = email_address(&request.email)
        .map_err(|e| ApiFailure::invalid("invalid_field", e.to_string()))?
        .to_lowercase();
    check_password(&request.password)?;
    let user_id = request.user_id.unwrap_or_default();
    let password_hash = hash_password(request.password).await?;
    state.store.create_account(Account { user_id, email, password_hash, created_at: now() }).await?;
    Ok((StatusCode::CREATED, Json(issue_token(&state, user_id).await?)))
}

/// `POST /v1/auth/login`
pub(crate) async fn log_in(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<LogInRequest>,
) -> Result<Json<AuthResponse>, ApiFailure> {
    let refused =
        || ApiFailure::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "wrong email or password");
    if request.password.len() > MAX_PASSWORD {
        return Err(refused());
    }
    // An address that could not have signed up has no account (and must not reach the database
    // as is: PostgreSQL refuses a NUL byte).
    let account = match email_address(&request.email) {
        Ok(email) => state.store.find_account(&email.to_lowercase()).await?,
        Err(_) => None,
    };
    // An unknown email costs one hash verification too, so timing does not tell which emails
    // have accounts.
    let hash = match &account {
        Some(account) => account.password_hash.clone(),
        None => dummy_hash().await?,
    };
    let matches = password_matches(request.password, hash).await;
    match account {
        Some(account) if matches => Ok(Json(issue_token(&state, account.user_id).await?)),
        _ => Err(refused()),
    }
}

/// `GET /v1/accounts?email=`: the account an email address belongs to, for a signed-in user
/// inviting its owner. Signed-in users can tell which addresses have accounts (as in any
/// collaboration tool that invites by email); strangers cannot.
pub(crate) async fn account(
    State(state): State<AppState>,
    _auth: AuthUser,
    ApiQuery(query): ApiQuery<AccountQuery>,
) -> Result<Json<AccountSummary>, ApiFailure> {
    let email = email_address(&query.email)
        .map_err(|e| ApiFailure::invalid("invalid_field", e.to_string()))?
        .to_lowercase();
    match state.store.find_account(&email).await? {
        Some(account) => Ok(Json(AccountSummary { user_id: account.user_id, email: account.email })),
        None => Err(ApiFailure::new(StatusCode::NOT_FOUND, "no_account", format!("no account uses {email}"))),
    }
}

/// `POST /v1/auth/logout`: the token stops working.
pub(crate) async fn log_out(State(state): State<AppState>, auth: AuthUser) -> Result<StatusCode, ApiFailure> {
    state.store.revoke_token(&auth.token_hash).await?;
    Ok(StatusCode::NO_CONTENT)
}
