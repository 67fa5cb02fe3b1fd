//! Conversions in the background, in the house shape (`crate::service`): `start(request)` queues
//! one and returns its id, events report its progress and end, `cancel()` stops the one running
//! (the builder is killed and its half-written output removed), dropping the service cancels and
//! joins. One conversion runs at a time: the builder needs several times the model's size in
//! memory.

use std::path::PathBuf;

use super::{ConvertProgress, ConvertRequest, Converted, convert};
use crate::service::{Outbox, Service, Waker};

pub enum ConvertCommand {
    Convert { id: u64, request: ConvertRequest },
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConvertEvent {
    /// The checks passed (or are running) and the builder is about to start.
    Started { id: u64, checkpoint: PathBuf },
    Progress { id: u64, progress: ConvertProgress },
    Finished { id: u64, converted: Converted },
    Failed { id: u64, message: String },
    Cancelled { id: u64 },
}

impl ConvertEvent {
    pub fn id(&self) -> u64 {
        match self {
            ConvertEvent::Started { id, .. }
            | ConvertEvent::Progress { id, .. }
            | ConvertEvent::Finished { id, .. }
            | ConvertEvent::Failed { id, .. }
            | ConvertEvent::Cancelled { id } => *id,
        }
    }
}

pub struct ConvertService {
    service: Service<ConvertCommand, ConvertEvent>,
    next_id: u64,
}

impl ConvertService {
    pub fn start(waker: Waker) -> std::io::Result<Self> {
        let service = Service::spawn("modeldesk-convert", waker, |commands, outbox: Outbox<ConvertEvent>| {
            for ConvertCommand::Convert { id, request } in commands {
                outbox.send(ConvertEvent::Started { id, checkpoint: request.checkpoint.clone() });
                let result = convert(&request, &mut |progress| {
                    outbox.send(ConvertEvent::Progress { id, progress: progress.clone() });
                }, outbox.cancel_flag());
                let event = match result {
                    Ok(converted) => ConvertEvent::Finished { id, converted },
                    Err(super::ConvertError::Cancelled) => ConvertEvent::Cancelled { id },
                    Err(error) => ConvertEvent::Failed { id, message: error.to_string() },
                };
                // A cancel ends only the conversion it was meant for.
                outbox.reset_cancel();
                outbox.send(event);
            }
        })?;
        Ok(Self { service, next_id: 1 })
    }

    /// Queues a conversion; returns its id.
    pub fn convert(&mut self, request: ConvertRequest) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.service.send(ConvertCommand::Convert { id, request });
        id
    }

    /// Stops the conversion in flight.
    pub fn cancel(&self) {
        self.service.cancel();
    }

    pub fn try_recv(&self) -> Option<ConvertEvent> {
        self.service.try_recv()
    }

    pub fn recv_timeout(&self, timeout: std::time::Duration) -> Option<ConvertEvent> {
        self.service.recv_timeout(timeout)
    }
}
