//! ModelDesk: chat with local Phi-3 ONNX models, manage and export MLflow model folders.
//!
//! The libraries (`runtime`, `engine`, and the MLflow format) work without the GUI; `app` and
//! `ui` are the egui front end, `cli` the headless one. See ARCHITECTURE.md.

pub mod app;
pub mod app_dirs;
pub mod chat;
pub mod checkpoint;
pub mod cli;
pub mod convert;
pub mod crash;
pub mod engine;
pub mod engine_queue;
pub mod fsio;
pub mod gui;
pub mod hub;
pub mod inspect;
pub mod memory;
pub mod mlflow;
pub mod remote;
pub mod runtime;
pub mod server;
pub mod service;
pub mod session;
pub mod staging;
pub mod tracking;
pub mod transfer;
pub mod ui;
