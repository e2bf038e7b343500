//! Two or three data planes in one process, connected over loopback TCP.

use std::io::{Read, Write};
use std::time::Duration;
use weir_net::{ChannelId, NetError, Network, Secret, WorkerId};

const WAIT: Duration = Duration::from_secs(10);

fn secret(text: &str) -> Secret {
    Secret::new(format!("{text}-0123456789abcdef")).expect("secret")
}

fn pair() -> (Network, Network) {
    let a = Network::bind(WorkerId(1), "127.0.0.1:0", secret("s")).expect("bind a");
    let b = Network::bind(WorkerId(2), "127.0.0.1:0", secret("s")).expect("bind b");
    a.connect(WorkerId(2), &b.local_addr().to_string(), WAIT)
        .expect("connect");
    (a, b)
}

fn channel(index: u64) -> ChannelId {
    ChannelId { scope: 1, index }
}

#[test]
fn messages_arrive_in_order_through_a_small_window() {
    let (a, b) = pair();
    let mut rx = b
        .receiver(WorkerId(1), channel(1), 2, WAIT)
        .expect("receiver");
    let mut tx = a.sender(WorkerId(2), channel(1), WAIT).expect("sender");
    let sending = std::thread::spawn(move || {
        for i in 0u32..5_000 {
            tx.send(i.to_le_bytes().to_vec()).expect("send");
        }
        tx.finish();
    });
    for i in 0u32..5_000 {
        let bytes = rx.recv().expect("recv");
        assert_eq!(bytes, i.to_le_bytes().to_vec());
    }
    sending.join().expect("sender thread");
    assert_eq!(a.connected(), vec![WorkerId(2)]);
    assert_eq!(b.connected(), vec![WorkerId(1)]);
}

#[test]
fn a_sender_holds_no_more_than_the_receivers_window() {
    let (a, b) = pair();
    let _rx = b
        .receiver(WorkerId(1), channel(7), 3, WAIT)
        .expect("receiver");
    let mut tx = a.sender(WorkerId(2), channel(7), WAIT).expect("sender");
    // The credit grant may still be on its way.
    while tx.credits() < 3 {
        std::thread::sleep(Duration::from_millis(5));
    }
    for _ in 0..3 {
        tx.send(vec![0; 1000]).expect("send");
    }
    assert_eq!(
        tx.credits(),
        0,
        "a fourth message would wait for the receiver"
    );
}

#[test]
fn a_full_channel_does_not_stop_another_on_the_same_connection() {
    let (a, b) = pair();
    // Channel 1's receiver never reads.
    let _stuck = b
        .receiver(WorkerId(1), channel(1), 2, WAIT)
        .expect("receiver 1");
    let mut flowing = b
        .receiver(WorkerId(1), channel(2), 2, WAIT)
        .expect("receiver 2");
    let mut stuck_tx = a.sender(WorkerId(2), channel(1), WAIT).expect("sender 1");
    let blocked = std::thread::spawn(move || {
        // Two go out on credit, the third waits forever (until the scope closes).
        let mut sent = 0;
        while stuck_tx.send(vec![1; 10]).is_ok() {
            sent += 1;
        }
        sent
    });
    let mut tx = a.sender(WorkerId(2), channel(2), WAIT).expect("sender 2");
    let sending = std::thread::spawn(move || {
        for i in 0u32..2_000 {
            tx.send(i.to_le_bytes().to_vec()).expect("send");
        }
        tx.finish();
    });
    for i in 0u32..2_000 {
        assert_eq!(flowing.recv().expect("recv"), i.to_le_bytes().to_vec());
    }
    sending.join().expect("sender 2");
    a.close_scope(1, "the test ended");
    assert_eq!(blocked.join().expect("sender 1"), 2);
}

#[test]
fn a_worker_without_the_secret_is_refused() {
    let a = Network::bind(WorkerId(1), "127.0.0.1:0", secret("right")).expect("bind");
    let b = Network::bind(WorkerId(2), "127.0.0.1:0", secret("wrong")).expect("bind");
    let error = b
        .connect(WorkerId(1), &a.local_addr().to_string(), WAIT)
        .expect_err("refused");
    assert!(matches!(error, NetError::Refused { .. }), "{error}");
    assert!(error.to_string().contains("secret"), "{error}");
    assert!(a.connected().is_empty());
    assert!(b.connected().is_empty());
}

#[test]
fn a_connection_to_the_wrong_worker_is_refused() {
    let (a, _b) = pair();
    let c = Network::bind(WorkerId(3), "127.0.0.1:0", secret("s")).expect("bind");
    let error = a
        .connect(WorkerId(4), &c.local_addr().to_string(), WAIT)
        .expect_err("refused");
    assert!(
        error.to_string().contains("worker 3, not worker 4"),
        "{error}"
    );
}

#[test]
fn something_that_is_not_a_weir_worker_is_refused() {
    // A server answering nonsense.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = listener.local_addr().expect("addr").to_string();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut hello = [0u8; 46];
        let _ = stream.read_exact(&mut hello);
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    let a = Network::bind(WorkerId(1), "127.0.0.1:0", secret("s")).expect("bind");
    let error = a.connect(WorkerId(2), &addr, WAIT).expect_err("refused");
    assert!(error.to_string().contains("protocol"), "{error}");
    server.join().expect("server");

    // A client sending nonsense is dropped; the data plane goes on serving.
    let mut stream = std::net::TcpStream::connect(a.local_addr()).expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0")
        .expect("write");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(a.connected().is_empty());
    let b = Network::bind(WorkerId(2), "127.0.0.1:0", secret("s")).expect("bind");
    b.connect(WorkerId(1), &a.local_addr().to_string(), WAIT)
        .expect("a real worker still connects");
}

#[test]
fn a_peer_that_goes_away_fails_the_channels_it_carried() {
    let (a, b) = pair();
    let mut rx = a
        .receiver(WorkerId(2), channel(1), 4, WAIT)
        .expect("receiver");
    let mut tx = b.sender(WorkerId(1), channel(1), WAIT).expect("sender");
    tx.send(vec![42]).expect("send");
    assert_eq!(rx.recv().expect("first"), vec![42]);
    // The peer process ends: its sockets close under the channel.
    std::mem::forget(tx);
    drop(b);
    let error = rx.recv().expect_err("lost");
    assert!(
        matches!(
            error,
            NetError::Lost {
                peer: WorkerId(2),
                ..
            }
        ),
        "{error}"
    );
    // A new channel to the lost worker is refused until it reconnects.
    let error = a
        .sender(WorkerId(2), channel(2), Duration::from_millis(50))
        .expect_err("not connected");
    assert!(matches!(error, NetError::NotConnected { .. }), "{error}");
}

#[test]
fn a_sender_that_stops_early_aborts_its_channel() {
    let (a, b) = pair();
    let mut rx = b
        .receiver(WorkerId(1), channel(3), 4, WAIT)
        .expect("receiver");
    let mut tx = a.sender(WorkerId(2), channel(3), WAIT).expect("sender");
    tx.send(vec![1]).expect("send");
    drop(tx);
    assert_eq!(rx.recv().expect("the message before"), vec![1]);
    let error = rx.recv().expect_err("aborted");
    assert!(
        error.to_string().contains("before the end of its output"),
        "{error}"
    );
}

#[test]
fn closing_a_scope_wakes_its_receivers_and_spares_other_scopes() {
    let (a, b) = pair();
    let mut old = b
        .receiver(WorkerId(1), ChannelId { scope: 1, index: 1 }, 4, WAIT)
        .expect("receiver");
    let mut new = b
        .receiver(WorkerId(1), ChannelId { scope: 2, index: 1 }, 4, WAIT)
        .expect("receiver");
    let waiting = std::thread::spawn(move || old.recv());
    b.close_scope(1, "attempt 1 ended");
    let error = waiting.join().expect("thread").expect_err("closed");
    assert!(error.to_string().contains("attempt 1 ended"), "{error}");
    let mut tx = a
        .sender(WorkerId(2), ChannelId { scope: 2, index: 1 }, WAIT)
        .expect("sender");
    tx.send(vec![9]).expect("send");
    assert_eq!(new.recv().expect("other scope"), vec![9]);
}

#[test]
fn a_short_secret_is_refused() {
    let error = Secret::new("short").expect_err("too short");
    assert!(error.to_string().contains("at least 16"), "{error}");
    assert_eq!(format!("{:?}", secret("x")), "Secret(..)");
}

/// The test certificates (tests/fixtures/tls): `node.pem` names 127.0.0.1.
fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/tls/{name}"))
}

/// A data plane with TLS, trusting the certificates signed by `ca`.
fn with_tls(id: u32, ca: &str) -> Network {
    let tls = weir_net::tls::DataPlaneTls {
        server: weir_net::tls::ServerTls::load(&fixture("node.pem"), &fixture("node.key"))
            .expect("certificate"),
        client: weir_net::tls::ClientTls::load(&fixture(ca)).expect("authority"),
    };
    Network::bind_with(WorkerId(id), "127.0.0.1:0", secret("s"), Some(tls)).expect("bind")
}

#[test]
fn with_tls_messages_arrive_and_a_plain_or_untrusting_peer_is_refused() {
    let a = with_tls(1, "ca.pem");
    let b = with_tls(2, "ca.pem");
    a.connect(WorkerId(2), &b.local_addr().to_string(), WAIT)
        .expect("connect");
    let mut rx = b
        .receiver(WorkerId(1), channel(1), 4, WAIT)
        .expect("receiver");
    let mut tx = a.sender(WorkerId(2), channel(1), WAIT).expect("sender");
    let sending = std::thread::spawn(move || {
        for i in 0u32..2_000 {
            tx.send(i.to_le_bytes().repeat(100)).expect("send");
        }
        tx.finish();
    });
    for i in 0u32..2_000 {
        assert_eq!(rx.recv().expect("recv"), i.to_le_bytes().repeat(100));
    }
    sending.join().expect("sender thread");

    // A worker without TLS cannot talk to one with it, either way.
    let plain = Network::bind(WorkerId(3), "127.0.0.1:0", secret("s")).expect("bind");
    let error = plain
        .connect(WorkerId(1), &a.local_addr().to_string(), WAIT)
        .expect_err("refused");
    assert!(matches!(error, NetError::Refused { .. }), "{error}");
    let error = a
        .connect(WorkerId(3), &plain.local_addr().to_string(), WAIT)
        .expect_err("refused");
    assert!(
        error.to_string().contains("TLS handshake failed"),
        "{error}"
    );

    // A worker that does not trust the others' authority refuses them.
    let untrusting = with_tls(4, "node.pem");
    let error = untrusting
        .connect(WorkerId(1), &a.local_addr().to_string(), WAIT)
        .expect_err("refused");
    assert!(
        error.to_string().contains("TLS handshake failed"),
        "{error}"
    );
    assert_eq!(a.connected(), vec![WorkerId(2)]);
}

#[test]
fn unusable_tls_files_are_named_in_the_error() {
    let missing = weir_net::tls::ClientTls::load(&fixture("missing.pem")).unwrap_err();
    assert!(missing.to_string().contains("missing.pem"), "{missing}");
    let no_cert = weir_net::tls::ClientTls::load(&fixture("README.md")).unwrap_err();
    assert!(no_cert.to_string().contains("no CERTIFICATE"), "{no_cert}");
    let mismatch =
        weir_net::tls::ServerTls::load(&fixture("ca.pem"), &fixture("node.key")).unwrap_err();
    assert!(
        mismatch.to_string().contains("do not go together"),
        "{mismatch}"
    );
}
