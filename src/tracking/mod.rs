//! A native MLflow Tracking + Model Registry client over MLflow's REST API (no Python at run
//! time; `../shared/docs/mlflow-tracking-registry.md`): connection and credentials (`config`),
//! the REST objects (`types`), model URIs (`uri`), the HTTP calls (`client`, `api`), pulling
//! (`pull`) and pushing (`push`) models as background services, and chat traces (`traces`).
//! Knows nothing of the GUI.

pub mod api;
pub mod client;
pub mod config;
pub mod credentials;
pub mod pull;
pub mod push;
pub mod traces;
pub mod types;
pub mod uri;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

pub use client::{TrackingClient, TrackingError};

/// Runs `work` with an owned cancel flag that follows `service_flag` (a service lends its flag
/// by reference; the HTTP layer's clients want one they can keep).
pub(crate) fn mirror_cancel<R>(service_flag: &AtomicBool, work: impl FnOnce(Arc<AtomicBool>) -> R) -> R {
    struct Done<'a>(&'a AtomicBool);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let flag = Arc::new(AtomicBool::new(false));
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let mirrored = Arc::clone(&flag);
        let finished = &done;
        scope.spawn(move || {
            while !finished.load(Ordering::SeqCst) {
                if service_flag.load(Ordering::SeqCst) {
                    mirrored.store(true, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        // Ends the watcher even if `work` panics.
        let _done = Done(&done);
        work(flag)
    })
}
