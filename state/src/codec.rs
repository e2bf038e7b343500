//! The binary encoding of state: bincode (standard configuration) over serde.

use crate::StateError;
use serde::{de::DeserializeOwned, Serialize};

/// Encodes `value`; `state` names it in errors.
///
/// # Errors
/// [`StateError::Encode`] if serde refuses the value.
pub fn encode<T: Serialize>(state: &str, value: &T) -> Result<Vec<u8>, StateError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|e| {
        StateError::Encode {
            state: state.to_string(),
            reason: e.to_string(),
        }
    })
}

/// Decodes a value written by [`encode`]; `state` names it in errors.
///
/// # Errors
/// [`StateError::Corrupt`] if the bytes are not a complete encoding of a `T`.
pub fn decode<T: DeserializeOwned>(state: &str, bytes: &[u8]) -> Result<T, StateError> {
    let (value, read) =
        bincode::serde::decode_from_slice::<T, _>(bytes, bincode::config::standard()).map_err(
            |e| StateError::Corrupt {
                state: state.to_string(),
                reason: e.to_string(),
            },
        )?;
    if read != bytes.len() {
        return Err(StateError::Corrupt {
            state: state.to_string(),
            reason: format!("{} trailing bytes after the value", bytes.len() - read),
        });
    }
    Ok(value)
}
