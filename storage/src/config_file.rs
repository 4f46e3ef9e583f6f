//! The storage config file: default S3 settings and named S3-compatible stores, each serving
//! the buckets it lists (as Spark's per-bucket `fs.s3a.bucket.<name>.*` settings do), so table
//! locations stay plain `s3://bucket/...` URLs whichever endpoint holds the bucket.
//!
//! ```toml
//! [s3]                                   # buckets no store claims
//! region = "eu-west-1"
//! buckets = ["lake"]                     # optional: only these (and the stores') buckets
//!
//! [stores.onprem]
//! endpoint = "http://minio.internal:9000"
//! buckets = ["raw-events", "curated"]
//! access_key_id_env = "MINIO_ACCESS_KEY_ID"        # or access_key_id = "..."
//! secret_access_key_env = "MINIO_SECRET_ACCESS_KEY"
//! ```
//!
//! Credentials left out come from the standard AWS chain (environment, profile, instance role).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{NamedStore, S3Config, StorageConfig};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    s3: Option<Section>,
    #[serde(default)]
    stores: BTreeMap<String, Section>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    access_key_id_env: Option<String>,
    secret_access_key: Option<String>,
    secret_access_key_env: Option<String>,
    session_token: Option<String>,
    session_token_env: Option<String>,
    virtual_hosted_style: Option<bool>,
    /// In `[stores.NAME]`: the buckets it serves. In `[s3]`: if given, the only buckets the
    /// default settings serve (no other bucket may be read).
    buckets: Option<Vec<String>>,
}

/// A literal value, or the value of the environment variable named instead.
fn value(literal: Option<String>, env: Option<String>, what: &str, section: &str) -> Result<Option<String>, String> {
    match (literal, env) {
        (Some(_), Some(_)) => Err(format!("[{section}] sets both {what} and {what}_env")),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(var)) => {
            std::env::var(&var).map(Some).map_err(|_| format!("[{section}] {what}_env names {var}, which is not set"))
        }
        (None, None) => Ok(None),
    }
}

impl Section {
    /// These settings over `base`: what the section leaves out keeps `base`'s value.
    fn over(self, base: &S3Config, section: &str) -> Result<S3Config, String> {
        Ok(S3Config {
            endpoint: self.endpoint.or_else(|| base.endpoint.clone()),
            region: self.region.or_else(|| base.region.clone()),
            access_key_id: value(self.access_key_id, self.access_key_id_env, "access_key_id", section)?
                .or_else(|| base.access_key_id.clone()),
            secret_access_key: value(self.secret_access_key, self.secret_access_key_env, "secret_access_key", section)?
                .or_else(|| base.secret_access_key.clone()),
            session_token: value(self.session_token, self.session_token_env, "session_token", section)?
                .or_else(|| base.session_token.clone()),
            virtual_hosted_style: self.virtual_hosted_style.unwrap_or(base.virtual_hosted_style),
        })
    }
}

impl StorageConfig {
    /// Adds the settings of a storage config file (TOML) to this config. Errors say which
    /// section and setting is wrong, and never echo a value.
    pub fn with_config_file(mut self, text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| format!("storage config: {}", e.message()))?;
        if let Some(mut s3) = file.s3 {
            if let Some(buckets) = s3.buckets.take() {
                if buckets.is_empty() {
                    return Err(
                        "[s3] buckets is empty: list the buckets the default settings serve, or leave it out".into()
                    );
                }
                self.default_buckets = Some(buckets);
            }
            self.s3 = s3.over(&self.s3, "s3")?;
        }
        for (name, section) in file.stores {
            let heading = format!("stores.{name}");
            let buckets = match section.buckets.clone() {
                Some(buckets) if !buckets.is_empty() => buckets,
                _ => return Err(format!("[{heading}] lists no buckets; say which buckets it serves")),
            };
            // Named stores start from the defaults' region only: another endpoint's credentials
            // must not leak to this one.
            let base = S3Config { region: self.s3.region.clone(), ..S3Config::default() };
            let s3 = section.over(&base, &heading)?;
            for bucket in &buckets {
                if let Some(other) = self.stores.iter().find(|s| s.buckets.contains(bucket)) {
                    return Err(format!("bucket {bucket} is claimed by both [stores.{}] and [{heading}]", other.name));
                }
            }
            self.stores.push(NamedStore { name, buckets, s3 });
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_stores_serve_their_buckets() {
        let text = r#"
            [s3]
            region = "eu-west-1"
            access_key_id = "default-key"
            secret_access_key = "default-secret"

            [stores.onprem]
            endpoint = "http://127.0.0.1:9000"
            buckets = ["raw", "curated"]
            access_key_id = "minio"
            secret_access_key_env = "GLAUX_TEST_UNSET_VARIABLE"
        "#;
        let error = StorageConfig::default().with_config_file(text).err().unwrap_or_default();
        assert!(error.contains("GLAUX_TEST_UNSET_VARIABLE, which is not set"), "{error}");
        let text = text
            .replace("secret_access_key_env = \"GLAUX_TEST_UNSET_VARIABLE\"", "secret_access_key = \"s3cr3t-minio\"");
        let config = StorageConfig::default().with_config_file(&text).unwrap();
        let (name, onprem) = config.s3_for("curated");
        assert_eq!(
            (name, onprem.endpoint.as_deref(), onprem.region.as_deref()),
            ("onprem", Some("http://127.0.0.1:9000"), Some("eu-west-1"))
        );
        assert_eq!(onprem.secret_access_key.as_deref(), Some("s3cr3t-minio"));
        let (name, default) = config.s3_for("elsewhere");
        assert_eq!((name, default.access_key_id.as_deref()), ("default", Some("default-key")));
        assert!(!format!("{config:?}").contains("s3cr3t"));
        // Without `[s3] buckets`, any bucket; with it, only those and the stores' buckets.
        assert!(config.check_location("s3://elsewhere/t/").is_ok());
        let confined = text.replace("region = \"eu-west-1\"\n", "region = \"eu-west-1\"\nbuckets = [\"lake\"]\n");
        let config = StorageConfig::default().with_config_file(&confined).unwrap();
        assert!(config.check_location("s3://lake/t/").is_ok() && config.check_location("s3://raw/t/").is_ok());
        let error = config.check_location("s3://elsewhere/t/").unwrap_err();
        assert!(matches!(error, crate::LocationError::UnconfiguredBucket { .. }), "{error}");

        for (bad, expected) in [
            ("[stores.x]\nendpoint = \"http://a\"", "lists no buckets"),
            ("[stores.x]\nbuckets = [\"b\"]\n[stores.y]\nbuckets = [\"b\"]", "claimed by both"),
            ("[s3]\nendpoin = \"x\"", "unknown field"),
            ("[s3]\nbuckets = []", "buckets is empty"),
        ] {
            let error = StorageConfig::default().with_config_file(bad).err().unwrap_or_default();
            assert!(error.contains(expected), "{bad}: {error}");
        }
    }
}
