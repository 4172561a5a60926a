//! The floor under a TLS subscriber's memory: what rustls's `ServerConnection` keeps after the
//! handshake and a request, and what the lean TLS path keeps instead (the negotiated AEAD's
//! encrypter and decrypter, built from the keys taken out of rustls, `transport/record.rs`),
//! measured with a counting allocator (the heap freed when it drops, plus its inline size).
//! `--nocapture` prints the figures.
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests: panics report

use std::alloc::System;
use std::io::{Read, Write};
use std::sync::Arc;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-cert.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-key.pem");

/// Moves every TLS record `from` has to send into `to`.
fn pump(from: &mut dyn FnMut(&mut Vec<u8>) -> usize, to: &mut dyn FnMut(&[u8])) -> bool {
    let mut wire = Vec::new();
    while from(&mut wire) > 0 {}
    if !wire.is_empty() {
        to(&wire);
    }
    !wire.is_empty()
}

fn connected_pair() -> (ClientConnection, ServerConnection) {
    let server_config = sse_server::tls_acceptor(CERT, KEY)
        .unwrap()
        .config()
        .clone();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(CERT).unwrap())
        .unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let client_config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = ClientConnection::new(Arc::new(client_config), name).unwrap();
    let mut server = ServerConnection::new(server_config).unwrap();
    // The handshake, then a subscription request and the response head, as a subscriber's are.
    client
        .writer()
        .write_all(b"GET /events/news HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    for _ in 0..16 {
        let a = pump(&mut |w| client.write_tls(w).unwrap(), &mut |b| {
            server.read_tls(&mut &b[..]).unwrap();
            server.process_new_packets().unwrap();
        });
        let b = pump(&mut |w| server.write_tls(w).unwrap(), &mut |b| {
            client.read_tls(&mut &b[..]).unwrap();
            client.process_new_packets().unwrap();
        });
        if !a && !b && !server.is_handshaking() {
            break;
        }
    }
    assert!(!server.is_handshaking() && !client.is_handshaking());
    let mut request = vec![0u8; 256];
    let n = server.reader().read(&mut request).unwrap();
    assert!(request[..n].starts_with(b"GET /events/news"));
    server
        .writer()
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        .unwrap();
    pump(&mut |w| server.write_tls(w).unwrap(), &mut |b| {
        client.read_tls(&mut &b[..]).unwrap();
        client.process_new_packets().unwrap();
    });
    (client, server)
}

/// The tests count every allocation of the process: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The heap `value` frees when it drops.
fn heap_of<T>(value: T) -> usize {
    let region = Region::new(GLOBAL);
    drop(value);
    let stats = region.change();
    stats
        .bytes_deallocated
        .saturating_sub(stats.bytes_allocated)
}

#[test]
fn a_tls_connection_after_its_handshake_costs_a_few_kib() {
    let _serial = serial();
    let inline = std::mem::size_of::<ServerConnection>();
    let (_client, server) = connected_pair();
    let heap = heap_of(server);
    println!("ServerConnection after handshake + request: {inline} B inline + {heap} B heap");

    // A send buffer limit changes nothing once the buffer is empty; what stays is the record
    // layer's keys, the traffic state and the deframer's read buffer, which rustls 0.23 keeps at
    // 4,096 B even when empty (msgs/deframer/buffers.rs, `prepare_read`). Hence the lean TLS
    // path keeps none of it: it takes the keys out after the handshake (the next test).
    let (_client, mut server) = connected_pair();
    server.set_buffer_limit(Some(0));
    let limited = heap_of(server);
    println!("with set_buffer_limit(Some(0)): {limited} B heap");

    // Measured: 1,168 B inline + 6,281 B heap. A lean TLS subscriber keeping this connection cost
    // that plus a plaintext one (11.9 KiB at 10k); it now keeps only its keys (the test below).
    assert!(
        inline + heap <= 8 * 1024,
        "rustls keeps {} B per connection",
        inline + heap
    );
}

#[test]
fn a_lean_tls_subscriber_keeps_only_its_keys_about_a_kib() {
    let _serial = serial();
    use tokio_rustls::rustls::ConnectionTrafficSecrets as Secrets;
    use tokio_rustls::rustls::SupportedCipherSuite;

    let (_client, server) = connected_pair();
    let Some(SupportedCipherSuite::Tls13(suite)) = server.negotiated_cipher_suite() else {
        panic!("TLS 1.3 expected");
    };
    // What `Records::from_connection` does (the tls acceptor allows extraction).
    let secrets = server.dangerous_extract_secrets().unwrap();
    let key_and_iv = |s| match s {
        Secrets::Aes128Gcm { key, iv }
        | Secrets::Aes256Gcm { key, iv }
        | Secrets::Chacha20Poly1305 { key, iv } => (key, iv),
        _ => panic!("unexpected suite"),
    };
    let (tx_key, tx_iv) = key_and_iv(secrets.tx.1);
    let (rx_key, rx_iv) = key_and_iv(secrets.rx.1);
    let region = Region::new(GLOBAL);
    let keys = (
        suite.aead_alg.encrypter(tx_key, tx_iv),
        suite.aead_alg.decrypter(rx_key, rx_iv),
    );
    let built = region.change();
    let heap = built
        .bytes_allocated
        .saturating_sub(built.bytes_deallocated);
    let freed = heap_of(keys);
    println!(
        "{:?}: encrypter + decrypter {heap} B heap ({freed} B freed on drop)",
        suite.common.suite
    );
    // Measured: 1,120 B (TLS13_AES_256_GCM_SHA384: ring's key schedules, both directions), against
    // the 7,449 B of rustls's connection above.
    assert!(heap > 0 && heap <= 2048, "the keys take {heap} B");
}
