//! Passwords the user types in the GUI live in the operating system's keyring (Keychain, the
//! Windows Credential Manager, the Secret Service), never in a settings file. One entry per
//! tracking server and user name; the settings file remembers only the user name.

use super::config::{Auth, TrackingSettings};

/// The keyring service name of ModelDesk's entries.
pub const SERVICE: &str = "org.modeldesk.mlflow";
/// The keyring "user" under which a server's token is kept (`token@server`).
pub const TOKEN_ACCOUNT: &str = "token";

#[derive(Debug, thiserror::Error)]
#[error("the system keyring could not {action} the password for {user} at {server}: {reason}")]
pub struct CredentialError {
    pub action: &'static str,
    pub user: String,
    pub server: String,
    pub reason: String,
}

fn entry(server: &str, user: &str, action: &'static str) -> Result<keyring::Entry, CredentialError> {
    keyring::Entry::new(SERVICE, &account(server, user)).map_err(|e| CredentialError { action, user: user.into(), server: server.into(), reason: e.to_string() })
}

/// The keyring account name: `user@server`.
pub fn account(server: &str, user: &str) -> String {
    format!("{user}@{}", server.trim_end_matches('/'))
}

pub fn save_password(server: &str, user: &str, password: &str) -> Result<(), CredentialError> {
    let fail = |e: keyring::Error| CredentialError { action: "store", user: user.into(), server: server.into(), reason: e.to_string() };
    entry(server, user, "store")?.set_password(password).map_err(fail)
}

/// The stored password, `None` when there is none.
pub fn load_password(server: &str, user: &str) -> Result<Option<String>, CredentialError> {
    match entry(server, user, "read")?.get_password() {
        Ok(password) => Ok(Some(password)),
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(CredentialError { action: "read", user: user.into(), server: server.into(), reason: e.to_string() }),
    }
}

pub fn delete_password(server: &str, user: &str) -> Result<(), CredentialError> {
    match entry(server, user, "delete")?.delete_credential() {
        Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
        Err(e) => Err(CredentialError { action: "delete", user: user.into(), server: server.into(), reason: e.to_string() }),
    }
}

/// Basic credentials for the remembered server and user when the keyring has a password, else
/// the server's token when one was stored. Nothing is asked of the keyring unless the settings
/// name a user or a stored token (headless machines often have no keyring at all).
pub fn stored_auth(settings: &TrackingSettings) -> Option<Auth> {
    let server = settings.tracking_uri.as_deref()?;
    if let Some(user) = settings.username.as_deref() {
        let password = load_password(server, user).ok().flatten()?;
        return Some(Auth::Basic { username: user.to_owned(), password });
    }
    if settings.token_in_keyring {
        return load_password(server, TOKEN_ACCOUNT).ok().flatten().map(Auth::Bearer);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_name_the_user_and_server() {
        assert_eq!(account("http://127.0.0.1:5000/", "ann"), "ann@http://127.0.0.1:5000");
    }

    #[test]
    fn no_user_means_no_keyring_lookup() {
        let settings = TrackingSettings { tracking_uri: Some("http://127.0.0.1:5000".into()), ..Default::default() };
        assert_eq!(stored_auth(&settings), None);
    }
}
