//! Chat with models ModelDesk cannot run itself ("Run with MLflow"): `serve` starts
//! `mlflow models serve` for a model folder as a child process on a free loopback port and stops
//! it when dropped; `chat` speaks the `llm/v1/chat` body to an MLflow scoring server's
//! `/invocations` (local or remote) or an OpenAI-compatible `/v1/chat/completions` URL. Knows
//! nothing of the GUI.

pub mod chat;
pub mod serve;
