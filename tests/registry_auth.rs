//! The registry client against a basic-auth MLflow server and an unreachable one.

mod support;

use support::mlflow_server::{Flavour, MlflowServer, http_get};

#[test]
fn test_servers_start_answer_and_stop_when_dropped() {
    let open = MlflowServer::start(Flavour::Open);
    assert_eq!(http_get(open.port, "/version").map(|(s, b)| (s, b.trim().to_owned())), Some((200, "3.17.2".into())));
    let auth = MlflowServer::start(Flavour::BasicAuth);
    assert_eq!(http_get(auth.port, "/health").map(|(s, _)| s), Some(200));
    assert_eq!(http_get(auth.port, "/version").map(|(s, _)| s), Some(401));
    let port = open.port;
    drop(open);
    assert!(http_get(port, "/health").is_none(), "the dropped server still answers");
}
