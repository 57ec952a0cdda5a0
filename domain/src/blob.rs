//! Audio files as content-addressed blobs: named by the SHA-256 of their bytes, so a name says
//! exactly what the bytes are, a copy can be checked against its name, and the same file is
//! stored and sent once however many tracks use it.

use crate::error::ValidationError;
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// The SHA-256 of a blob's bytes, as 64 lower-case hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BlobHash(String);

impl BlobHash {
    /// The hash named by `text` (64 hexadecimal digits, either case).
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(text.to_ascii_lowercase()))
        } else {
            Err(ValidationError::new("sha256", "must be 64 hexadecimal digits"))
        }
    }

    /// The hash of a digest's 32 bytes.
    pub fn from_digest(digest: [u8; 32]) -> Self {
        use fmt::Write;
        let mut text = String::with_capacity(64);
        for byte in digest {
            // Writing to a String cannot fail.
            let _ = write!(text, "{byte:02x}");
        }
        Self(text)
    }

    /// The 64 lower-case digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl FromStr for BlobHash {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for BlobHash {
    type Error = ValidationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<BlobHash> for String {
    fn from(hash: BlobHash) -> Self {
        hash.0
    }
}

/// A blob the local cache holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedBlob {
    /// Its name.
    pub hash: BlobHash,
    /// Its length in bytes.
    pub size_bytes: u64,
    /// Kept through eviction, by the user's choice.
    pub pinned: bool,
    /// The server holds it. A blob the server lacks is never evicted: it is the only copy.
    pub uploaded: bool,
    /// When it was last added or read, in Unix milliseconds: eviction removes the least
    /// recently used first.
    pub last_used_at: i64,
}

/// What one eviction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EvictionReport {
    /// Blobs removed.
    pub removed: u64,
    /// Bytes freed.
    pub freed_bytes: u64,
    /// Bytes the cache holds afterwards.
    pub remaining_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_64_hex_digits_stored_lower_case() {
        let upper = "AB".repeat(32);
        assert_eq!(BlobHash::parse(&upper).map(|h| h.to_string()), Ok("ab".repeat(32)));
        for bad in ["", "ab", &"g".repeat(64), &"a".repeat(65)] {
            let error = BlobHash::parse(bad).expect_err(bad);
            assert_eq!(error.field, "sha256", "{bad}");
        }
        let mut digest = [0u8; 32];
        digest[0] = 0x0f;
        digest[31] = 0xa0;
        let hash = BlobHash::from_digest(digest);
        assert!(hash.as_str().starts_with("0f00") && hash.as_str().ends_with("00a0"), "{hash}");
        assert_eq!(serde_json::to_string(&hash).ok(), Some(format!("\"{hash}\"")));
        assert!(serde_json::from_str::<BlobHash>("\"nope\"").is_err());
    }
}
