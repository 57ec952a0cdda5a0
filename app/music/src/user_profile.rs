use serde::Serialize;
use std::collections::BTreeMap;
use trackflow_domain::{
    entities::FieldReader, entities::Scope, entities::ScopeKind, serde_json::Value, uuid::Uuid,
    validate::email_address, validate::optional_text, validate::required_text, EntityRef, Priority,
    SyncEntity, Timestamp, UserId, ValidationError,
};

/// A user's public profile. Its id is the user's id.
/// Serialises to its wire fields. It is deliberately not `Deserialize`: every way in goes
/// through the validating constructors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserProfile {
    id: UserId,
    name: String,
    email: String,
    avatar_url: Option<String>,
    creative_role: Option<String>,
    created_at: Timestamp,
}

/// Changes to a [`UserProfile`]; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserProfilePatch {
    /// A new display name.
    pub name: Option<String>,
    /// A new email address.
    pub email: Option<String>,
    /// A new avatar URL.
    pub avatar_url: Option<Option<String>>,
    /// A new creative role ("producer", "vocalist", ...).
    pub creative_role: Option<Option<String>>,
}

impl UserProfile {
    /// Longest allowed display name, in characters.
    pub const MAX_NAME: usize = 100;
    /// Longest allowed email address (RFC 5321 path limit).
    pub const MAX_EMAIL: usize = trackflow_domain::validate::MAX_EMAIL;
    /// Longest allowed avatar URL.
    pub const MAX_URL: usize = 2_048;
    /// Longest allowed creative role.
    pub const MAX_ROLE: usize = 50;

    /// A new profile for user `id`.
    pub fn new(id: UserId, name: &str, email: &str, now: Timestamp) -> Result<Self, ValidationError> {
        Self::restore(id, name, email, None, None, now)
    }

    /// Rebuilds a profile from stored or received parts, validating them.
    pub fn restore(
        id: UserId,
        name: &str,
        email: &str,
        avatar_url: Option<&str>,
        creative_role: Option<&str>,
        created_at: Timestamp,
    ) -> Result<Self, ValidationError> {
        let email = email_address(email)?;
        let avatar_url = optional_text("avatar_url", avatar_url, Self::MAX_URL)?;
        if let Some(url) = &avatar_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ValidationError::new("avatar_url", "must be an http(s) URL"));
            }
        }
        Ok(Self {
            id,
            name: required_text("name", name, Self::MAX_NAME)?,
            email,
            avatar_url,
            creative_role: optional_text("creative_role", creative_role, Self::MAX_ROLE)?,
            created_at,
        })
    }

    /// This profile with `patch` applied, validated.
    pub fn patched(&self, patch: &UserProfilePatch) -> Result<Self, ValidationError> {
        Self::restore(
            self.id,
            patch.name.as_deref().unwrap_or(&self.name),
            patch.email.as_deref().unwrap_or(&self.email),
            pick(&patch.avatar_url, &self.avatar_url),
            pick(&patch.creative_role, &self.creative_role),
            self.created_at,
        )
    }

    /// The user's id.
    pub fn id(&self) -> UserId {
        self.id
    }
    /// The display name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The email address.
    pub fn email(&self) -> &str {
        &self.email
    }
    /// The avatar URL, if any.
    pub fn avatar_url(&self) -> Option<&str> {
        self.avatar_url.as_deref()
    }
    /// The creative role, if any.
    pub fn creative_role(&self) -> Option<&str> {
        self.creative_role.as_deref()
    }
    /// When the profile was created.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
}

/// The patched value of an optional field: the patch's if it names one, else the current one.
pub(crate) fn pick<'a>(patch: &'a Option<Option<String>>, current: &'a Option<String>) -> Option<&'a str> {
    match patch {
        Some(new) => new.as_deref(),
        None => current.as_deref(),
    }
}

impl SyncEntity for UserProfile {
    type Id = UserId;
    type Patch = UserProfilePatch;

    const NAME: &'static str = "user_profile";
    const SCOPE: ScopeKind = ScopeKind::User;
    const PRIORITY: Priority = Priority::High;
    const TABLE: &'static str = "user_profiles";
    const ORDER: &'static [&'static str] = &["name"];
    const FIELDS: &'static [&'static str] = &["name", "email", "avatar_url", "creative_role", "created_at"];
    const IMMUTABLE: &'static [&'static str] = &["created_at"];

    fn from_fields(id: Uuid, fields: &BTreeMap<String, Value>) -> Result<Self, ValidationError> {
        let f = FieldReader::new(fields, Self::FIELDS)?;
        Self::restore(
            UserId::from_uuid(id),
            &f.required::<String>("name")?,
            &f.required::<String>("email")?,
            f.optional::<String>("avatar_url")?.as_deref(),
            f.optional::<String>("creative_role")?.as_deref(),
            f.required("created_at")?,
        )
    }

    fn scope(&self) -> Scope {
        Scope::User(self.id)
    }

    fn patched(&self, patch: &UserProfilePatch) -> Result<Self, ValidationError> {
        UserProfile::patched(self, patch)
    }

    fn entity_id(&self) -> Uuid {
        self.id.as_uuid()
    }

    fn references(&self) -> Vec<EntityRef> {
        Vec::new()
    }

    fn parent(&self) -> Option<EntityRef> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_must_look_like_emails() {
        let table = [
            ("plain", "ana@example.com", None),
            ("no at", "ana.example.com", Some("email")),
            ("no local part", "@example.com", Some("email")),
            ("no dot in domain", "ana@localhost", Some("email")),
            ("two ats", "ana@b@example.com", Some("email")),
            ("space", "ana maria@example.com", Some("email")),
            ("empty", "", Some("email")),
        ];
        for (case, email, failing) in table {
            let result = UserProfile::new(UserId::new(), "Ana", email, Timestamp(0));
            assert_eq!(result.err().map(|e| e.field), failing, "{case}");
        }
    }

    #[test]
    fn patch_validates_and_clears_optional_fields() {
        let p = UserProfile::new(UserId::new(), "Ana", "ana@example.com", Timestamp(0)).expect("valid");
        let with_avatar = p
            .patched(&UserProfilePatch {
                avatar_url: Some(Some("https://cdn.example.com/a.png".into())),
                creative_role: Some(Some("producer".into())),
                ..Default::default()
            })
            .expect("valid");
        assert_eq!(with_avatar.avatar_url(), Some("https://cdn.example.com/a.png"));
        let cleared = with_avatar
            .patched(&UserProfilePatch { avatar_url: Some(None), ..Default::default() })
            .expect("valid");
        assert_eq!((cleared.avatar_url(), cleared.creative_role()), (None, Some("producer")));
        let err = p
            .patched(&UserProfilePatch { avatar_url: Some(Some("ftp://x".into())), ..Default::default() })
            .unwrap_err();
        assert_eq!(err.field, "avatar_url");
    }
}
