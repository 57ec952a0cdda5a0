//! `trackflow signup`, `login` and `logout`: the device's account on a sync server. The
//! password is read from stdin, `TRACKFLOW_PASSWORD` or a terminal prompt, and is never
//! printed or logged; the token is kept in the local database's session, per data directory.

use super::{commands::App, AuthArgs};
use anyhow::{bail, Context};
use serde_json::json;
use shaku::HasComponent;
use std::io::{BufRead, IsTerminal};
use trackflow_client::wiring::repository;
use trackflow_domain::{
    ports::{AccessToken, PendingOperationsRepository, Session, SessionStorage},
    protocol::{LogInRequest, SignUpRequest},
};
use trackflow_music::UserProfile;
use trackflow_remote::{AuthClient, RemoteOptions};

impl App<'_> {
    /// Creates an account for this device's user (its profile's id, so everything written
    /// offline is theirs on the server too) and stores the token.
    pub(super) async fn sign_up(&self, args: AuthArgs) -> anyhow::Result<()> {
        let user_id = self.me().await?;
        let profiles = repository::<UserProfile>(self.module);
        let profile = profiles.get(user_id).await?.context("reading your profile")?;
        let server = self.server(args.server.as_deref()).await?;
        let email = args.email.unwrap_or_else(|| profile.email().to_owned());
        let password = password(args.password_stdin)?;
        let request = SignUpRequest { email: email.clone(), password, user_id: Some(user_id) };
        let answer = auth()?.sign_up(&server, &request).await.context("signing up")?;
        if answer.user_id != user_id {
            bail!("the server gave the account another user id ({}); nothing was stored", answer.user_id);
        }
        self.keep(Session {
            user_id,
            server_url: Some(server.clone()),
            access_token: Some(AccessToken::new(answer.token)),
        })
        .await?;
        self.signed_in("signed up", &email, &server).await
    }

    /// Logs in to an existing account. A data directory holding another user's work is
    /// refused: each user (or device) gets its own, with `--data-dir` or `--profile`.
    pub(super) async fn log_in(&self, args: AuthArgs) -> anyhow::Result<()> {
        let server = self.server(args.server.as_deref()).await?;
        let Some(email) = args.email else { bail!("give the account's email with --email") };
        let password = password(args.password_stdin)?;
        let answer = auth()?
            .log_in(&server, &LogInRequest { email: email.clone(), password })
            .await
            .context("logging in")?;
        let sessions: &dyn SessionStorage = self.module.resolve_ref();
        if let Some(current) = sessions.load().await? {
            if current.user_id != answer.user_id && self.holds_work_of(&current).await? {
                bail!(
                    "this data directory holds the work of another user ({}); use another --data-dir or --profile",
                    current.user_id
                );
            }
        }
        self.keep(Session {
            user_id: answer.user_id,
            server_url: Some(server.clone()),
            access_token: Some(AccessToken::new(answer.token)),
        })
        .await?;
        self.signed_in("logged in", &email, &server).await
    }

    /// Revokes the token on the server (when it can be reached) and forgets it here.
    pub(super) async fn log_out(&self) -> anyhow::Result<()> {
        let sessions: &dyn SessionStorage = self.module.resolve_ref();
        let Some(session) = sessions.load().await? else { bail!("not logged in") };
        let (Some(server), Some(token)) = (session.server_url.clone(), session.access_token.clone()) else {
            bail!("not logged in")
        };
        let revoked = auth()?.log_out(&server, token.expose()).await;
        sessions.save(Session { access_token: None, ..session }).await?;
        let note = match &revoked {
            Ok(()) => String::new(),
            Err(error) => format!(" (the server was not told: {error})"),
        };
        self.out
            .value(&json!({ "logged_out": true, "revoked": revoked.is_ok() }), &format!("logged out{note}"))
    }

    /// The server to use: the flag (or `TRACKFLOW_SERVER`), the config file, the last used.
    async fn server(&self, flag: Option<&str>) -> anyhow::Result<String> {
        if let Some(server) = flag.map(str::to_owned).or_else(|| self.settings.server.clone()) {
            return validated(server);
        }
        let sessions: &dyn SessionStorage = self.module.resolve_ref();
        match sessions.load().await?.and_then(|s| s.server_url) {
            Some(server) => Ok(server),
            None => bail!("no sync server given: pass --server URL (or set it in the config file)"),
        }
    }

    async fn holds_work_of(&self, session: &Session) -> anyhow::Result<bool> {
        let profiles = repository::<UserProfile>(self.module);
        let outbox: &dyn PendingOperationsRepository = self.module.resolve_ref();
        let counts = outbox.counts().await?;
        Ok(profiles.get(session.user_id).await?.is_some()
            || counts.pending + counts.in_flight + counts.failed > 0)
    }

    async fn keep(&self, session: Session) -> anyhow::Result<()> {
        let sessions: &dyn SessionStorage = self.module.resolve_ref();
        sessions.save(session).await.context("storing the session")
    }

    async fn signed_in(&self, what: &str, email: &str, server: &str) -> anyhow::Result<()> {
        let outbox: &dyn PendingOperationsRepository = self.module.resolve_ref();
        let queued = outbox.counts().await?.pending;
        let sessions: &dyn SessionStorage = self.module.resolve_ref();
        let user_id = sessions.load().await?.map(|s| s.user_id);
        let human =
            format!("{what} as {email} at {server}; {queued} queued changes sync with `trackflow sync`");
        self.out
            .value(&json!({ "user_id": user_id, "email": email, "server": server, "queued": queued }), &human)
    }
}

fn auth() -> anyhow::Result<AuthClient> {
    AuthClient::new(&RemoteOptions::default()).context("building the HTTP client")
}

/// A server URL must be http or https.
fn validated(server: String) -> anyhow::Result<String> {
    if server.starts_with("http://") || server.starts_with("https://") {
        Ok(server.trim_end_matches('/').to_owned())
    } else {
        bail!("invalid server URL '{server}': it must start with http:// or https://")
    }
}

/// The password: stdin's first line with `--password-stdin`, else `TRACKFLOW_PASSWORD`, else a
/// prompt when stdin is a terminal.
fn password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else if let Ok(password) = std::env::var("TRACKFLOW_PASSWORD") {
        password
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password("password: ").context("reading the password")?
    } else {
        bail!("no password: pass --password-stdin, set TRACKFLOW_PASSWORD, or run on a terminal")
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}
