//! Where the Hub is, who we are, and where the cache lives: the environment variables
//! huggingface_hub reads, with its defaults, so both tools share one cache and one login.

use std::path::{Path, PathBuf};

use super::HubError;

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

#[derive(Debug, Clone)]
pub struct HubSettings {
    /// `HF_ENDPOINT` without a trailing `/`.
    pub endpoint: String,
    /// `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`, or the token file (`HF_TOKEN_PATH`, `$HF_HOME/token`).
    pub token: Option<String>,
    /// `HF_HUB_CACHE`, `HUGGINGFACE_HUB_CACHE`, or `$HF_HOME/hub`.
    pub cache_dir: PathBuf,
    /// `HF_HUB_OFFLINE`: no request at all, the cache only.
    pub offline: bool,
    /// False with `HF_HUB_DISABLE_SYMLINKS`; files are then stored in the snapshot itself (what
    /// huggingface_hub does where symlinks are not allowed, as on Windows without Developer Mode).
    pub symlinks: bool,
}

impl HubSettings {
    pub fn from_env() -> Result<Self, HubError> {
        let home = directories::BaseDirs::new().map(|dirs| dirs.home_dir().to_path_buf());
        Self::from_lookup(|name| std::env::var(name).ok(), home.as_deref())
    }

    /// As [`from_env`](Self::from_env) with another source of variables (tests).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>, home: Option<&Path>) -> Result<Self, HubError> {
        let var = |name: &str| var(name).filter(|value| !value.is_empty());
        let expand = |value: String| match (value.strip_prefix("~/").or(value.strip_prefix("~\\")), home) {
            (Some(rest), Some(home)) => home.join(rest),
            _ => PathBuf::from(value),
        };
        let home_cache = home.map(|h| h.join(".cache")).unwrap_or_else(|| PathBuf::from(".cache"));
        let hf_home = var("HF_HOME")
            .map(expand)
            .unwrap_or_else(|| var("XDG_CACHE_HOME").map(expand).unwrap_or(home_cache).join("huggingface"));
        let cache_dir = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")).map(expand).unwrap_or_else(|| hf_home.join("hub"));
        let token_file = var("HF_TOKEN_PATH").map(expand).unwrap_or_else(|| hf_home.join("token"));
        let token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| read_token_file(&token_file))
            .map(|token| token.trim().to_owned())
            .filter(|token| !token.is_empty());
        if token.as_deref().is_some_and(|t| !t.bytes().all(|b| b.is_ascii_graphic())) {
            return Err(HubError::BadToken);
        }
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()).trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&endpoint).map_err(|e| HubError::BadEndpoint { endpoint: endpoint.clone(), reason: e.to_string() })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(HubError::BadEndpoint { endpoint, reason: "it must start with https:// or http://".into() });
        }
        Ok(Self {
            endpoint,
            token,
            cache_dir,
            offline: var("HF_HUB_OFFLINE").or_else(|| var("TRANSFORMERS_OFFLINE")).is_some_and(|v| is_true(&v)),
            symlinks: !var("HF_HUB_DISABLE_SYMLINKS").is_some_and(|v| is_true(&v)),
        })
    }
}

/// huggingface_hub's truth values.
fn is_true(value: &str) -> bool {
    matches!(value.trim().to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE")
}

/// A token file is small; anything large (or not a regular file) is not a token file.
fn read_token_file(path: &Path) -> Option<String> {
    crate::fsio::read_text(path, 4096).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)], home: &Path) -> Result<HubSettings, HubError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        HubSettings::from_lookup(|name| vars.get(name).cloned(), Some(home))
    }

    #[test]
    fn defaults_follow_huggingface_hub() {
        let home = Path::new("/home/u");
        let plain = settings(&[], home).unwrap();
        assert_eq!(plain.endpoint, "https://huggingface.co");
        assert_eq!(plain.cache_dir, home.join(".cache/huggingface/hub"));
        assert_eq!((plain.offline, plain.symlinks, plain.token.as_deref()), (false, true, None));
        let xdg = settings(&[("XDG_CACHE_HOME", "/x")], home).unwrap();
        assert_eq!(xdg.cache_dir, Path::new("/x/huggingface/hub"));
        let hf_home = settings(&[("XDG_CACHE_HOME", "/x"), ("HF_HOME", "~/hf")], home).unwrap();
        assert_eq!(hf_home.cache_dir, home.join("hf/hub"));
        let legacy = settings(&[("HF_HOME", "/h"), ("HUGGINGFACE_HUB_CACHE", "/legacy")], home).unwrap();
        assert_eq!(legacy.cache_dir, Path::new("/legacy"));
        let hub = settings(&[("HF_HUB_CACHE", "/c"), ("HUGGINGFACE_HUB_CACHE", "/legacy")], home).unwrap();
        assert_eq!(hub.cache_dir, Path::new("/c"));
        let flags = settings(&[("HF_HUB_OFFLINE", "yes"), ("HF_HUB_DISABLE_SYMLINKS", "1"), ("HF_ENDPOINT", "http://127.0.0.1:9/")], home).unwrap();
        assert_eq!((flags.offline, flags.symlinks, flags.endpoint.as_str()), (true, false, "http://127.0.0.1:9"));
    }

    #[test]
    fn token_comes_from_the_environment_then_the_token_file() {
        let home = tempfile::tempdir().unwrap();
        let hf_home = home.path().join("hf");
        std::fs::create_dir_all(&hf_home).unwrap();
        std::fs::write(hf_home.join("token"), "hf_file\n").unwrap();
        let hf_home_text = hf_home.to_str().unwrap();
        assert_eq!(settings(&[("HF_HOME", hf_home_text)], home.path()).unwrap().token.as_deref(), Some("hf_file"));
        let env = settings(&[("HF_HOME", hf_home_text), ("HUGGING_FACE_HUB_TOKEN", "hf_old"), ("HF_TOKEN", " hf_env ")], home.path()).unwrap();
        assert_eq!(env.token.as_deref(), Some("hf_env"));
        let legacy = settings(&[("HF_HOME", hf_home_text), ("HUGGING_FACE_HUB_TOKEN", "hf_old")], home.path()).unwrap();
        assert_eq!(legacy.token.as_deref(), Some("hf_old"));
        assert!(matches!(settings(&[("HF_TOKEN", "hf_a\u{7f}b")], home.path()), Err(HubError::BadToken)));
    }

    #[test]
    fn unusable_endpoints_are_refused() {
        let home = Path::new("/home/u");
        assert!(matches!(settings(&[("HF_ENDPOINT", "not a url")], home), Err(HubError::BadEndpoint { .. })));
        assert!(matches!(settings(&[("HF_ENDPOINT", "ftp://mirror")], home), Err(HubError::BadEndpoint { .. })));
    }
}
