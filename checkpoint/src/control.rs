//! Requests to a running job through its checkpoint storage: how `weir savepoint`
//! reaches a job that runs embedded in another process, with no server in between.
//!
//! ```text
//! <root>/<job>/_control/<id>.request   written by the requester
//! <root>/<job>/_control/<id>.reply     written by the job when it has answered
//! ```
//!
//! The running job polls for requests, takes (deletes) each one it finds, acts on it
//! and writes the reply; the requester polls for the reply and deletes it. Works on
//! every storage weir checkpoints to (local filesystem, S3).

use crate::{CheckpointError, CheckpointStorage};
use bytes::Bytes;
use object_store::path::Path;
use object_store::PutMode;
use serde::{Deserialize, Serialize};

/// The directory, under a job's directory, of control requests and replies.
pub const CONTROL_DIR: &str = "_control";

/// What is asked of the running job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRequest {
    /// Names the request and its reply: 1–64 characters from `A-Z a-z 0-9 _ -`.
    pub id: String,
    /// Take a savepoint; with `stop`, stop the job after it (stop-with-savepoint).
    pub stop: bool,
}

/// The job's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlReply {
    /// The savepoint was written here.
    Savepoint {
        /// Its location (directory URL).
        location: String,
    },
    /// The savepoint could not be taken.
    Failed {
        /// Why.
        reason: String,
    },
}

fn check_id(id: &str) -> Result<(), CheckpointError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(CheckpointError::InvalidName {
            what: "control request id",
            name: id.to_owned(),
            reason: "expected 1-64 characters from A-Z a-z 0-9 _ -".into(),
        })
    }
}

fn control_path(job: &str, id: &str, suffix: &str) -> Result<Path, CheckpointError> {
    check_id(id)?;
    Ok(crate::layout::job_dir(job)?
        .join(CONTROL_DIR)
        .join(format!("{id}.{suffix}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Bytes, CheckpointError> {
    weir_state::encode("control", value)
        .map(Bytes::from)
        .map_err(|e| CheckpointError::CorruptControl {
            object: "control message".into(),
            reason: e.to_string(),
        })
}

impl CheckpointStorage {
    /// Leaves `request` for the running job `job`.
    ///
    /// # Errors
    /// [`CheckpointError::InvalidName`] for a bad id or job name;
    /// [`CheckpointError::Io`].
    pub async fn put_control_request(
        &self,
        job: &str,
        request: &ControlRequest,
    ) -> Result<(), CheckpointError> {
        let path = control_path(job, &request.id, "request")?;
        self.put(&path, encode(request)?, PutMode::Overwrite).await
    }

    /// Takes (reads and deletes) every pending request for `job`. A request that does
    /// not decode is deleted with a warning naming it.
    ///
    /// # Errors
    /// [`CheckpointError::InvalidName`]; [`CheckpointError::Io`].
    pub async fn take_control_requests(
        &self,
        job: &str,
    ) -> Result<Vec<ControlRequest>, CheckpointError> {
        let dir = crate::layout::job_dir(job)?.join(CONTROL_DIR);
        let mut requests = Vec::new();
        for path in self.list_relative(&dir).await? {
            if !path.as_ref().ends_with(".request") {
                continue;
            }
            let bytes = match self.get(&path).await {
                Ok(bytes) => bytes,
                Err(CheckpointError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            self.delete(&path).await?;
            match weir_state::decode::<ControlRequest>("control request", &bytes) {
                Ok(request) if check_id(&request.id).is_ok() => requests.push(request),
                _ => tracing::warn!(
                    object = %self.describe(&path),
                    "ignoring a control request that does not decode"
                ),
            }
        }
        Ok(requests)
    }

    /// Withdraws a request nobody took.
    ///
    /// # Errors
    /// [`CheckpointError::InvalidName`]; [`CheckpointError::Io`].
    pub async fn withdraw_control_request(
        &self,
        job: &str,
        id: &str,
    ) -> Result<(), CheckpointError> {
        self.delete(&control_path(job, id, "request")?).await
    }

    /// Answers request `id` of `job`.
    ///
    /// # Errors
    /// [`CheckpointError::InvalidName`]; [`CheckpointError::Io`].
    pub async fn put_control_reply(
        &self,
        job: &str,
        id: &str,
        reply: &ControlReply,
    ) -> Result<(), CheckpointError> {
        let path = control_path(job, id, "reply")?;
        self.put(&path, encode(reply)?, PutMode::Overwrite).await
    }

    /// Takes (reads and deletes) the reply to request `id`, if it is there.
    ///
    /// # Errors
    /// [`CheckpointError::InvalidName`]; [`CheckpointError::Io`];
    /// [`CheckpointError::CorruptControl`] when the reply does not decode.
    pub async fn take_control_reply(
        &self,
        job: &str,
        id: &str,
    ) -> Result<Option<ControlReply>, CheckpointError> {
        let path = control_path(job, id, "reply")?;
        let bytes = match self.get(&path).await {
            Ok(bytes) => bytes,
            Err(CheckpointError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        self.delete(&path).await?;
        weir_state::decode::<ControlReply>("control reply", &bytes)
            .map(Some)
            .map_err(|e| CheckpointError::CorruptControl {
                object: self.describe(&path),
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_and_replies_travel_through_storage() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::open_url(dir.path().to_str().unwrap())
            .await
            .unwrap();
        assert!(storage
            .take_control_requests("job")
            .await
            .unwrap()
            .is_empty());
        let request = ControlRequest {
            id: "abc-1".into(),
            stop: true,
        };
        storage.put_control_request("job", &request).await.unwrap();
        assert_eq!(
            storage.take_control_requests("job").await.unwrap(),
            vec![request]
        );
        assert!(storage
            .take_control_requests("job")
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            storage.take_control_reply("job", "abc-1").await.unwrap(),
            None
        );
        let reply = ControlReply::Savepoint {
            location: "file:///sp".into(),
        };
        storage
            .put_control_reply("job", "abc-1", &reply)
            .await
            .unwrap();
        assert_eq!(
            storage.take_control_reply("job", "abc-1").await.unwrap(),
            Some(reply)
        );
        assert!(storage
            .put_control_reply(
                "job",
                "../x",
                &ControlReply::Failed {
                    reason: String::new()
                }
            )
            .await
            .is_err());
    }
}
