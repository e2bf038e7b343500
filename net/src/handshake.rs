//! The handshake that opens every connection: protocol and version first, then
//! mutual proof of the shared secret.
//!
//! ```text
//! dialer   -> acceptor: MAGIC, version, dialer's worker id, nonce_d
//! acceptor -> dialer:   MAGIC, version, status 0, acceptor's worker id, nonce_a,
//!                       HMAC(secret, "acceptor" | nonce_d | nonce_a | ids)
//!                       (or status 1 and a reason: another version)
//! dialer   -> acceptor: HMAC(secret, "dialer" | nonce_a | nonce_d | ids)
//! acceptor -> dialer:   status 0 (accepted) or 1 and a reason
//! ```
//!
//! Each side proves it knows the secret by a MAC over the other side's fresh nonce,
//! so neither a recorded handshake nor a reflected one is accepted, and the secret
//! never travels.

use crate::{NetError, Secret, WorkerId, PROTOCOL_VERSION};
use ring::hmac;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const MAGIC: &[u8; 8] = b"WEIRNET\0";
const NONCE: usize = 32;
const MAC: usize = 32;
const ACCEPTED: u8 = 0;
const REFUSED: u8 = 1;

fn nonce() -> Result<[u8; NONCE], NetError> {
    crate::nonce()
}

/// What a side's MAC covers: its role, the other side's nonce first, both worker ids.
fn transcript(
    role: &[u8],
    first: &[u8; NONCE],
    second: &[u8; NONCE],
    ids: (WorkerId, WorkerId),
) -> Vec<u8> {
    let mut message = Vec::with_capacity(32 + 2 * NONCE);
    message.extend_from_slice(b"weir-net/1 ");
    message.extend_from_slice(role);
    message.extend_from_slice(first);
    message.extend_from_slice(second);
    message.extend_from_slice(&ids.0 .0.to_le_bytes());
    message.extend_from_slice(&ids.1 .0.to_le_bytes());
    message
}

fn key(secret: &Secret) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret.bytes())
}

async fn write_reason<W: AsyncWrite + Unpin>(out: &mut W, reason: &str) -> io::Result<()> {
    let bytes = reason.as_bytes();
    let len = bytes.len().min(u16::MAX as usize);
    out.write_all(&[REFUSED]).await?;
    out.write_all(&(len as u16).to_le_bytes()).await?;
    out.write_all(&bytes[..len]).await?;
    out.flush().await
}

async fn read_status<R: AsyncRead + Unpin>(input: &mut R) -> io::Result<Result<(), String>> {
    let status = input.read_u8().await?;
    if status == ACCEPTED {
        return Ok(Ok(()));
    }
    let len = input.read_u16_le().await? as usize;
    let mut reason = vec![0u8; len];
    input.read_exact(&mut reason).await?;
    Ok(Err(String::from_utf8_lossy(&reason).into_owned()))
}

fn refused(peer: &str, reason: impl Into<String>) -> NetError {
    NetError::Refused {
        peer: peer.to_string(),
        reason: reason.into(),
    }
}

fn cut(peer: &str, e: io::Error) -> NetError {
    refused(
        peer,
        format!("the handshake broke off ({e}); is the peer a weir worker with the same secret?"),
    )
}

/// The dialing side. Returns the acceptor's worker id.
pub(crate) async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    me: WorkerId,
    secret: &Secret,
    peer: &str,
) -> Result<WorkerId, NetError> {
    let ours = nonce()?;
    let mut hello = Vec::with_capacity(8 + 2 + 4 + NONCE);
    hello.extend_from_slice(MAGIC);
    hello.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    hello.extend_from_slice(&me.0.to_le_bytes());
    hello.extend_from_slice(&ours);
    stream.write_all(&hello).await.map_err(|e| cut(peer, e))?;
    stream.flush().await.map_err(|e| cut(peer, e))?;

    let mut magic = [0u8; 8];
    stream
        .read_exact(&mut magic)
        .await
        .map_err(|e| cut(peer, e))?;
    if &magic != MAGIC {
        return Err(refused(
            peer,
            "the peer does not speak weir's data-plane protocol",
        ));
    }
    let version = stream.read_u16_le().await.map_err(|e| cut(peer, e))?;
    if let Err(reason) = read_status(stream).await.map_err(|e| cut(peer, e))? {
        return Err(refused(
            peer,
            format!("{reason} (it speaks version {version}, this process {PROTOCOL_VERSION})"),
        ));
    }
    let theirs_id = WorkerId(stream.read_u32_le().await.map_err(|e| cut(peer, e))?);
    let mut theirs = [0u8; NONCE];
    stream
        .read_exact(&mut theirs)
        .await
        .map_err(|e| cut(peer, e))?;
    let mut tag = [0u8; MAC];
    stream
        .read_exact(&mut tag)
        .await
        .map_err(|e| cut(peer, e))?;
    let expected = transcript(b"acceptor", &ours, &theirs, (theirs_id, me));
    if hmac::verify(&key(secret), &expected, &tag).is_err() {
        return Err(refused(
            peer,
            "the peer could not prove it knows the cluster secret",
        ));
    }
    let proof = hmac::sign(
        &key(secret),
        &transcript(b"dialer", &theirs, &ours, (me, theirs_id)),
    );
    stream
        .write_all(proof.as_ref())
        .await
        .map_err(|e| cut(peer, e))?;
    stream.flush().await.map_err(|e| cut(peer, e))?;
    match read_status(stream).await.map_err(|e| cut(peer, e))? {
        Ok(()) => Ok(theirs_id),
        Err(reason) => Err(refused(peer, reason)),
    }
}

/// The accepting side. Returns the dialer's worker id.
pub(crate) async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    me: WorkerId,
    secret: &Secret,
    peer: &str,
) -> Result<WorkerId, NetError> {
    let mut magic = [0u8; 8];
    stream
        .read_exact(&mut magic)
        .await
        .map_err(|e| cut(peer, e))?;
    if &magic != MAGIC {
        return Err(refused(
            peer,
            "it does not speak weir's data-plane protocol",
        ));
    }
    let version = stream.read_u16_le().await.map_err(|e| cut(peer, e))?;
    let theirs_id = WorkerId(stream.read_u32_le().await.map_err(|e| cut(peer, e))?);
    let mut theirs = [0u8; NONCE];
    stream
        .read_exact(&mut theirs)
        .await
        .map_err(|e| cut(peer, e))?;
    stream.write_all(MAGIC).await.map_err(|e| cut(peer, e))?;
    stream
        .write_all(&PROTOCOL_VERSION.to_le_bytes())
        .await
        .map_err(|e| cut(peer, e))?;
    if version != PROTOCOL_VERSION {
        let reason = format!("protocol version {version} is not supported");
        let _ = write_reason(stream, &reason).await;
        return Err(refused(peer, reason));
    }
    let ours = nonce()?;
    let proof = hmac::sign(
        &key(secret),
        &transcript(b"acceptor", &theirs, &ours, (me, theirs_id)),
    );
    let mut reply = Vec::with_capacity(1 + 4 + NONCE + MAC);
    reply.push(ACCEPTED);
    reply.extend_from_slice(&me.0.to_le_bytes());
    reply.extend_from_slice(&ours);
    reply.extend_from_slice(proof.as_ref());
    stream.write_all(&reply).await.map_err(|e| cut(peer, e))?;
    stream.flush().await.map_err(|e| cut(peer, e))?;
    let mut tag = [0u8; MAC];
    stream
        .read_exact(&mut tag)
        .await
        .map_err(|e| cut(peer, e))?;
    let expected = transcript(b"dialer", &ours, &theirs, (theirs_id, me));
    if hmac::verify(&key(secret), &expected, &tag).is_err() {
        let reason = "it could not prove it knows the cluster secret";
        let _ = write_reason(stream, reason).await;
        return Err(refused(peer, reason));
    }
    stream
        .write_all(&[ACCEPTED])
        .await
        .map_err(|e| cut(peer, e))?;
    stream.flush().await.map_err(|e| cut(peer, e))?;
    Ok(theirs_id)
}
