//! Typed requests to the agent over a [`Connection`]: ids, deadlines, and a strict check of
//! every answer. Nothing the guest sends is trusted: a wrong id or an undecodable answer is a
//! protocol error, never a panic.

use crate::machine::transport::{Connection, TransportError};
use provium_agent::protocol::{decode, encode_frame, Envelope, Request, Response};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the agent answered request {got} while request {expected} was pending")]
    WrongId { expected: u64, got: u64 },
    #[error("undecodable answer from the agent: {0}")]
    Garbage(String),
    /// The request was not sent (it could not be encoded, or is over the frame limit).
    #[error("cannot send the request: {0}")]
    Encode(String),
}

pub struct AgentClient {
    conn: Connection,
    next_id: u64,
}

impl AgentClient {
    pub fn new(conn: Connection) -> AgentClient {
        AgentClient { conn, next_id: 1 }
    }

    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Sends `request` and waits for its answer until `deadline`.
    pub fn call(
        &mut self,
        request: &Request,
        deadline: Option<Instant>,
    ) -> Result<Response, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = encode_frame(&Envelope { id, body: request })
            .map_err(|e| ClientError::Encode(e.to_string()))?;
        self.conn.send(&frame, deadline)?;
        self.answer(id, deadline)
    }

    /// Reads the next answer, which must carry `id`.
    fn answer(&mut self, id: u64, deadline: Option<Instant>) -> Result<Response, ClientError> {
        let payload = self.conn.recv(deadline)?;
        let envelope: Envelope<Response> =
            decode(&payload).map_err(|e| ClientError::Garbage(e.to_string()))?;
        if envelope.id != id {
            return Err(ClientError::WrongId {
                expected: id,
                got: envelope.id,
            });
        }
        Ok(envelope.body)
    }

    /// Sends all `requests` at once, then reads their answers in order: one wait for the guest
    /// instead of one per request.
    pub fn call_pipelined(
        &mut self,
        requests: &[Request],
        deadline: Option<Instant>,
    ) -> Result<Vec<Response>, ClientError> {
        let first = self.next_id;
        let mut frames = Vec::new();
        for request in requests {
            let id = self.next_id;
            self.next_id += 1;
            frames.extend(
                encode_frame(&Envelope { id, body: request })
                    .map_err(|e| ClientError::Encode(e.to_string()))?,
            );
        }
        self.conn.send(&frames, deadline)?;
        (first..self.next_id)
            .map(|id| self.answer(id, deadline))
            .collect()
    }

    /// Sends raw bytes as one frame (for robustness tests) and returns the agent's answer.
    pub fn call_raw(
        &mut self,
        payload: &[u8],
        deadline: Option<Instant>,
    ) -> Result<Response, ClientError> {
        let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(payload);
        self.conn.send(&frame, deadline)?;
        let answer = self.conn.recv(deadline)?;
        let envelope: Envelope<Response> =
            decode(&answer).map_err(|e| ClientError::Garbage(e.to_string()))?;
        Ok(envelope.body)
    }
}
