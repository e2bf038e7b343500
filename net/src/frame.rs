//! The frames of an established connection: a little-endian `u32` length of what
//! follows, a kind byte, the channel, and the kind's body.
//!
//! | kind | body |
//! |---|---|
//! | 1 data | the message's bytes |
//! | 2 credit | `u32` messages the receiver can take more |
//! | 3 abort | why, UTF-8: the sender stopped before the end of its output |

use crate::ChannelId;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame accepted: a bigger length is a corrupt or foreign stream.
pub(crate) const MAX_FRAME: usize = 1 << 30;

const DATA: u8 = 1;
const CREDIT: u8 = 2;
const ABORT: u8 = 3;
/// Kind byte and channel.
const HEADER: usize = 1 + 8 + 8;

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Data(ChannelId, Vec<u8>),
    Credit(ChannelId, u32),
    Abort(ChannelId, String),
}

impl Frame {
    pub(crate) async fn write<W: AsyncWrite + Unpin>(&self, out: &mut W) -> io::Result<()> {
        let (kind, channel, body): (u8, ChannelId, &[u8]) = match self {
            Frame::Data(channel, bytes) => (DATA, *channel, bytes),
            Frame::Credit(channel, _) => (CREDIT, *channel, &[]),
            Frame::Abort(channel, reason) => (ABORT, *channel, reason.as_bytes()),
        };
        let credit = match self {
            Frame::Credit(_, n) => Some(n.to_le_bytes()),
            _ => None,
        };
        let body_len = credit.map_or(body.len(), |c| c.len());
        let len = u32::try_from(HEADER + body_len)
            .ok()
            .filter(|&l| l as usize <= MAX_FRAME)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("a message of {body_len} bytes is over the frame limit"),
                )
            })?;
        let mut head = [0u8; 4 + HEADER];
        head[..4].copy_from_slice(&len.to_le_bytes());
        head[4] = kind;
        head[5..13].copy_from_slice(&channel.scope.to_le_bytes());
        head[13..21].copy_from_slice(&channel.index.to_le_bytes());
        out.write_all(&head).await?;
        match credit {
            Some(c) => out.write_all(&c).await,
            None => out.write_all(body).await,
        }
    }

    /// The next frame, or `None` at a clean end of the stream (between frames).
    ///
    /// # Errors
    /// The stream ends inside a frame, or a frame is malformed.
    pub(crate) async fn read<R: AsyncRead + Unpin>(input: &mut R) -> io::Result<Option<Frame>> {
        let mut len = [0u8; 4];
        // The stream may end cleanly only before a frame's first byte.
        if input.read(&mut len[..1]).await? == 0 {
            return Ok(None);
        }
        input.read_exact(&mut len[1..]).await?;
        let len = u32::from_le_bytes(len) as usize;
        if !(HEADER..=MAX_FRAME).contains(&len) {
            return Err(invalid(format!(
                "a frame of {len} bytes (expected {HEADER} to {MAX_FRAME})"
            )));
        }
        let mut head = [0u8; HEADER];
        input.read_exact(&mut head).await?;
        let channel = ChannelId {
            scope: u64::from_le_bytes(head[1..9].try_into().map_err(|_| invalid("header"))?),
            index: u64::from_le_bytes(head[9..17].try_into().map_err(|_| invalid("header"))?),
        };
        let mut body = vec![0u8; len - HEADER];
        input.read_exact(&mut body).await?;
        match head[0] {
            DATA => Ok(Some(Frame::Data(channel, body))),
            CREDIT => {
                let n: [u8; 4] = body
                    .as_slice()
                    .try_into()
                    .map_err(|_| invalid(format!("a credit frame of {} bytes", body.len())))?;
                Ok(Some(Frame::Credit(channel, u32::from_le_bytes(n))))
            }
            ABORT => Ok(Some(Frame::Abort(
                channel,
                String::from_utf8_lossy(&body).into_owned(),
            ))),
            kind => Err(invalid(format!("a frame of unknown kind {kind}"))),
        }
    }
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed data-plane stream: {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(frame: Frame) -> Frame {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut bytes = Vec::new();
            frame.write(&mut bytes).await.expect("write");
            let mut input = bytes.as_slice();
            let read = Frame::read(&mut input)
                .await
                .expect("read")
                .expect("a frame");
            assert!(input.is_empty());
            read
        })
    }

    #[test]
    fn frames_read_back_as_written() {
        let channel = ChannelId {
            scope: 7,
            index: u64::MAX - 3,
        };
        for frame in [
            Frame::Data(channel, vec![1, 2, 3]),
            Frame::Data(channel, Vec::new()),
            Frame::Credit(channel, 9),
            Frame::Abort(channel, "stopped".into()),
        ] {
            let expected = format!("{frame:?}");
            assert_eq!(format!("{:?}", roundtrip(frame)), expected);
        }
    }

    #[test]
    fn a_stream_cut_inside_a_frame_or_a_bad_length_is_an_error() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut bytes = Vec::new();
            Frame::Data(ChannelId { scope: 1, index: 2 }, vec![5; 100])
                .write(&mut bytes)
                .await
                .expect("write");
            for cut in [2, 10, 50] {
                let mut input = &bytes[..cut];
                assert!(Frame::read(&mut input).await.is_err(), "cut at {cut}");
            }
            let mut empty: &[u8] = &[];
            assert!(Frame::read(&mut empty).await.expect("clean end").is_none());
            let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0xff, 1];
            let error = Frame::read(&mut huge).await.expect_err("too long");
            assert!(error.to_string().contains("malformed"), "{error}");
        });
    }
}
