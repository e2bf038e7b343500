//! A worker's end of the data plane: its listener, one connection per peer worker,
//! and the tasks that read and write each connection.
//!
//! The connections run on a small tokio runtime of their own. Per connection, a
//! writer task takes frames from an unbounded queue (bounded in practice by the
//! credits the receivers granted) and writes them in batches; a reader task reads
//! frames and hands each to its channel without ever blocking. The task threads of
//! the dataflow use the channel ends (`channel.rs`) and block only on their own
//! channel's credits or messages.

use crate::channel::{ChannelReceiver, ChannelSender, ChannelState, Closure, Inbound};
use crate::frame::Frame;
use crate::tls::{self, DataPlaneTls};
use crate::{handshake, ChannelId, NetError, Secret, WorkerId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How long an accepted connection may take to authenticate.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const BUFFER: usize = 64 * 1024;

/// A connection to one peer worker.
pub(crate) struct Peer {
    pub(crate) id: WorkerId,
    out: Mutex<Option<mpsc::UnboundedSender<Frame>>>,
    channels: Mutex<HashMap<ChannelId, Arc<ChannelState>>>,
    lost: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Peer {
    pub(crate) fn send(&self, frame: Frame) -> Result<(), NetError> {
        let sent = lock(&self.out)
            .as_ref()
            .map(|out| out.send(frame).is_ok())
            .unwrap_or(false);
        if sent {
            Ok(())
        } else {
            Err(NetError::Lost {
                peer: self.id,
                reason: lock(&self.lost)
                    .clone()
                    .unwrap_or_else(|| "the connection is closed".into()),
            })
        }
    }

    /// The channel `id`, made on first use (a credit may arrive before its sender
    /// registers). On a lost connection it is made closed.
    pub(crate) fn channel(&self, id: ChannelId) -> Arc<ChannelState> {
        let lost = lock(&self.lost).clone();
        let mut channels = lock(&self.channels);
        let state = channels.entry(id).or_default().clone();
        drop(channels);
        if let Some(reason) = lost {
            state.close(Closure::Lost(reason));
        }
        state
    }

    pub(crate) fn forget(&self, id: ChannelId) {
        lock(&self.channels).remove(&id);
    }

    fn existing(&self, id: ChannelId) -> Option<Arc<ChannelState>> {
        lock(&self.channels).get(&id).cloned()
    }

    fn dispatch(&self, frame: Frame) {
        match frame {
            Frame::Data(id, bytes) => match self.existing(id) {
                Some(state) => state.deliver(Inbound::Data(bytes)),
                None => tracing::debug!("dropped a message of closed channel {id}"),
            },
            Frame::Credit(id, n) => self.channel(id).grant(n),
            Frame::Abort(id, reason) => {
                if let Some(state) = self.existing(id) {
                    state.deliver(Inbound::Abort(reason));
                }
            }
        }
    }

    /// Marks the connection lost: every channel on it fails, the writer stops.
    fn fail(&self, reason: &str) {
        {
            let mut lost = lock(&self.lost);
            if lost.is_none() {
                *lost = Some(reason.to_string());
            }
        }
        *lock(&self.out) = None;
        let channels: Vec<_> = lock(&self.channels).drain().map(|(_, s)| s).collect();
        for state in channels {
            state.close(Closure::Lost(reason.to_string()));
        }
    }

    fn is_lost(&self) -> bool {
        lock(&self.lost).is_some()
    }
}

struct Shared {
    me: WorkerId,
    secret: Secret,
    tls: Option<DataPlaneTls>,
    peers: Mutex<HashMap<WorkerId, Arc<Peer>>>,
    changed: Condvar,
}

/// An authenticated connection: plain TCP, or TLS over it.
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

/// The handshake of a connection this worker accepted from `addr`, plain or inside
/// TLS: the stream back, and the peer that dialled.
async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    mut stream: S,
    addr: &str,
) -> Result<(S, WorkerId), NetError> {
    let peer = handshake::accept(&mut stream, shared.me, &shared.secret, addr).await?;
    Ok((stream, peer))
}

/// The handshake of a connection this worker dialled, plain or inside TLS: the
/// stream back, and the peer it reached.
async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    mut stream: S,
    target: &str,
) -> Result<(S, WorkerId), NetError> {
    let id = handshake::dial(&mut stream, shared.me, &shared.secret, target).await?;
    Ok((stream, id))
}

fn tls_failed(peer: &str, e: std::io::Error) -> NetError {
    NetError::Refused {
        peer: peer.to_string(),
        reason: format!("the TLS handshake failed: {e}"),
    }
}

impl Shared {
    fn lose(&self, peer: &Arc<Peer>, reason: &str) {
        if !peer.is_lost() {
            tracing::warn!("data-plane connection with {} lost: {reason}", peer.id);
        }
        peer.fail(reason);
        let mut peers = lock(&self.peers);
        if peers.get(&peer.id).is_some_and(|p| Arc::ptr_eq(p, peer)) {
            peers.remove(&peer.id);
        }
        drop(peers);
        self.changed.notify_all();
    }

    /// Starts the reader and writer of an authenticated connection to `id`; a
    /// connection it had before is replaced (its peer restarted).
    fn register(self: &Arc<Self>, stream: Conn, id: WorkerId) {
        match stream {
            Conn::Plain(stream) => {
                let (read, write) = stream.into_split();
                self.run(id, read, write);
            }
            Conn::Tls(stream) => {
                let (read, write) = tokio::io::split(*stream);
                self.run(id, read, write);
            }
        }
    }

    fn run<R, W>(self: &Arc<Self>, id: WorkerId, read: R, write: W)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (out, frames) = mpsc::unbounded_channel();
        let peer = Arc::new(Peer {
            id,
            out: Mutex::new(Some(out)),
            channels: Mutex::default(),
            lost: Mutex::default(),
        });
        let replaced = lock(&self.peers).insert(id, peer.clone());
        if let Some(old) = replaced {
            old.fail("replaced by a new connection from the same worker");
        }
        self.changed.notify_all();
        tokio::spawn(write_loop(self.clone(), peer.clone(), frames, write));
        tokio::spawn(read_loop(self.clone(), peer, read));
    }
}

async fn write_loop(
    shared: Arc<Shared>,
    peer: Arc<Peer>,
    mut frames: mpsc::UnboundedReceiver<Frame>,
    write: impl AsyncWrite + Unpin,
) {
    let mut out = BufWriter::with_capacity(BUFFER, write);
    while let Some(frame) = frames.recv().await {
        let mut result = frame.write(&mut out).await;
        while result.is_ok() {
            match frames.try_recv() {
                Ok(frame) => result = frame.write(&mut out).await,
                Err(_) => break,
            }
        }
        if result.is_ok() {
            result = out.flush().await;
        }
        if let Err(e) = result {
            shared.lose(&peer, &format!("writing failed: {e}"));
            return;
        }
    }
    let _ = out.shutdown().await;
}

async fn read_loop(shared: Arc<Shared>, peer: Arc<Peer>, read: impl AsyncRead + Unpin) {
    let mut input = BufReader::with_capacity(BUFFER, read);
    let reason = loop {
        match Frame::read(&mut input).await {
            Ok(Some(frame)) => peer.dispatch(frame),
            Ok(None) => break "the peer closed the connection".to_string(),
            Err(e) => break format!("reading failed: {e}"),
        }
    };
    shared.lose(&peer, &reason);
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accepting a data-plane connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let addr = addr.to_string();
            let authenticated = async {
                match &shared.tls {
                    None => {
                        let (stream, peer) = accept(&shared, stream, &addr).await?;
                        Ok::<_, NetError>((Conn::Plain(stream), peer))
                    }
                    Some(tls) => {
                        let accepted = tls.server.acceptor().accept(stream).await;
                        let stream = accepted.map_err(|e| tls_failed(&addr, e))?;
                        let (stream, peer) = accept(&shared, stream, &addr).await?;
                        Ok((Conn::Tls(Box::new(stream.into())), peer))
                    }
                }
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, authenticated).await {
                Ok(Ok((stream, peer))) => shared.register(stream, peer),
                Ok(Err(e)) => tracing::warn!("{e}"),
                Err(_) => tracing::warn!(
                    "a data-plane connection from {addr} did not authenticate within {HANDSHAKE_TIMEOUT:?}"
                ),
            }
        });
    }
}

/// A worker's end of the data plane. Cheap to clone; the connections close when the
/// last clone is dropped.
#[derive(Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("me", &self.inner.shared.me)
            .field("addr", &self.inner.addr)
            .finish()
    }
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let peers: Vec<_> = lock(&self.shared.peers).drain().map(|(_, p)| p).collect();
        for peer in peers {
            peer.fail("this worker's data plane shut down");
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Network {
    /// Listens on `addr` (e.g. `0.0.0.0:6124`, or port 0 for any free port) as worker
    /// `me`, accepting connections of peers that know `secret`.
    ///
    /// # Errors
    /// The runtime or the listener cannot be started.
    pub fn bind(me: WorkerId, addr: &str, secret: Secret) -> Result<Self, NetError> {
        Self::bind_with(me, addr, secret, None)
    }

    /// [`bind`](Self::bind), with TLS on every connection if `tls` is given (the
    /// other workers must use TLS too).
    ///
    /// # Errors
    /// As [`bind`](Self::bind).
    pub fn bind_with(
        me: WorkerId,
        addr: &str,
        secret: Secret,
        tls: Option<DataPlaneTls>,
    ) -> Result<Self, NetError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("weir-net")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|source| NetError::Io {
                action: "start the data plane's runtime for",
                addr: addr.to_string(),
                source,
            })?;
        // Bound without blocking on the runtime, so that a caller inside another
        // runtime (an async `weir worker`) can bind too.
        let listen_error = |source| NetError::Io {
            action: "listen on",
            addr: addr.to_string(),
            source,
        };
        let listener = std::net::TcpListener::bind(addr).map_err(listen_error)?;
        listener.set_nonblocking(true).map_err(listen_error)?;
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(listener).map_err(listen_error)?
        };
        let local = listener.local_addr().map_err(|source| NetError::Io {
            action: "read the address of",
            addr: addr.to_string(),
            source,
        })?;
        let shared = Arc::new(Shared {
            me,
            secret,
            tls,
            peers: Mutex::default(),
            changed: Condvar::new(),
        });
        runtime.spawn(accept_loop(shared.clone(), listener));
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                addr: local,
                runtime: Some(runtime),
            }),
        })
    }

    /// This worker.
    pub fn id(&self) -> WorkerId {
        self.inner.shared.me
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The workers connected now.
    pub fn connected(&self) -> Vec<WorkerId> {
        let mut ids: Vec<_> = lock(&self.inner.shared.peers).keys().copied().collect();
        ids.sort();
        ids
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, NetError> {
        self.inner
            .runtime
            .as_ref()
            .ok_or_else(|| NetError::Invalid("the data plane is shut down".into()))
    }

    /// Connects to worker `peer` at `addr`, retrying until `timeout` while nothing
    /// listens there yet (the peer may still be starting). Nothing is done if a
    /// connection to it is up.
    ///
    /// # Errors
    /// [`NetError::Refused`] when the peer is not a weir worker with the same secret
    /// and protocol version, or is another worker than `peer`; [`NetError::Io`] when
    /// nothing accepted a connection within `timeout`.
    pub fn connect(&self, peer: WorkerId, addr: &str, timeout: Duration) -> Result<(), NetError> {
        if lock(&self.inner.shared.peers).contains_key(&peer) {
            return Ok(());
        }
        let shared = self.inner.shared.clone();
        let target = addr.to_string();
        let (done, result) = crossbeam_channel::bounded(1);
        self.runtime()?.spawn(async move {
            let deadline = Instant::now() + timeout;
            let outcome = loop {
                match TcpStream::connect(&target).await {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        let authenticated = async {
                            match &shared.tls {
                                None => {
                                    let (stream, id) = dial(&shared, stream, &target).await?;
                                    Ok::<_, NetError>((Conn::Plain(stream), id))
                                }
                                Some(tls) => {
                                    let name = tls::server_name(&target)?;
                                    let dialled =
                                        tls.client.connector().connect(name, stream).await;
                                    let stream = dialled.map_err(|e| tls_failed(&target, e))?;
                                    let (stream, id) = dial(&shared, stream, &target).await?;
                                    Ok((Conn::Tls(Box::new(stream.into())), id))
                                }
                            }
                        };
                        let answer = tokio::time::timeout(HANDSHAKE_TIMEOUT, authenticated)
                            .await
                            .unwrap_or_else(|_| {
                                Err(NetError::Refused {
                                    peer: target.clone(),
                                    reason: format!(
                                        "no answer to the handshake within {HANDSHAKE_TIMEOUT:?}"
                                    ),
                                })
                            });
                        break match answer {
                            Ok((stream, id)) if id == peer => {
                                shared.register(stream, id);
                                Ok(())
                            }
                            Ok((_, id)) => Err(NetError::Refused {
                                peer: target.clone(),
                                reason: format!("it is {id}, not {peer}"),
                            }),
                            Err(e) => Err(e),
                        };
                    }
                    Err(source) if Instant::now() >= deadline => {
                        break Err(NetError::Io {
                            action: "connect to",
                            addr: format!("{peer} at {target}"),
                            source,
                        })
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            };
            let _ = done.send(outcome);
        });
        result.recv().unwrap_or_else(|_| {
            Err(NetError::Invalid(
                "the data plane shut down while connecting".into(),
            ))
        })
    }

    /// The connection to `peer`, waiting up to `timeout` for it to come up (the peer
    /// may be the one that dials).
    fn peer(&self, peer: WorkerId, timeout: Duration) -> Result<Arc<Peer>, NetError> {
        let shared = &self.inner.shared;
        let deadline = Instant::now() + timeout;
        let mut peers = lock(&shared.peers);
        loop {
            if let Some(p) = peers.get(&peer) {
                return Ok(p.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NetError::NotConnected {
                    peer,
                    waited: timeout,
                });
            }
            peers = shared
                .changed
                .wait_timeout(peers, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The sending end of `channel` to `peer`. It can send once the receiver has
    /// registered and granted credit.
    ///
    /// # Errors
    /// [`NetError::NotConnected`] if no connection to `peer` is up within `timeout`.
    pub fn sender(
        &self,
        peer: WorkerId,
        channel: ChannelId,
        timeout: Duration,
    ) -> Result<ChannelSender, NetError> {
        let peer = self.peer(peer, timeout)?;
        let state = peer.channel(channel);
        Ok(ChannelSender {
            peer,
            id: channel,
            state,
            finished: false,
        })
    }

    /// The receiving end of `channel` from `peer`, buffering up to `window` messages
    /// (the credits it grants).
    ///
    /// # Errors
    /// [`NetError::NotConnected`] if no connection to `peer` is up within `timeout`;
    /// [`NetError::Invalid`] if the channel has a receiver already.
    pub fn receiver(
        &self,
        peer: WorkerId,
        channel: ChannelId,
        window: u32,
        timeout: Duration,
    ) -> Result<ChannelReceiver, NetError> {
        ChannelReceiver::register(self.peer(peer, timeout)?, channel, window)
    }

    /// Closes every channel of `scope` (an attempt that ended): their senders and
    /// receivers stop waiting and report `reason`.
    pub fn close_scope(&self, scope: u64, reason: &str) {
        let peers: Vec<_> = lock(&self.inner.shared.peers).values().cloned().collect();
        for peer in peers {
            let closing: Vec<_> = lock(&peer.channels)
                .iter()
                .filter(|(id, _)| id.scope == scope)
                .map(|(id, state)| (*id, state.clone()))
                .collect();
            for (id, state) in closing {
                state.close(Closure::Closed(reason.to_string()));
                peer.forget(id);
            }
        }
    }

    /// Drops the connection to `peer` as if the network had cut it: every channel on
    /// it fails.
    pub fn disconnect(&self, peer: WorkerId) {
        let found = lock(&self.inner.shared.peers).get(&peer).cloned();
        if let Some(p) = found {
            self.inner.shared.lose(&p, "disconnected by this worker");
        }
    }
}
