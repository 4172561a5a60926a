//! A lean TLS subscriber's record layer after its handshake: the negotiated AEAD's keys and
//! sequence numbers, taken out of rustls (`dangerous_extract_secrets`), sealing and opening
//! records with the crypto provider's own encrypter and decrypter (no cryptography here: only
//! the record framing, which the TLS 1.2 and 1.3 RFCs fix).
//!
//! Why: rustls 0.23's buffered `ServerConnection` keeps about 7.4 KiB per connection for as long as
//! it lives (its 4 KiB read buffer is never freed, see `tests/tls_floor.rs`); a subscriber that
//! only ever receives needs the keys and two sequence numbers, a few hundred bytes.
//!
//! What it does not do, and how the connection ends instead (the client then reconnects with its
//! Last-Event-ID and misses nothing):
//! - A KeyUpdate from the client (TLS 1.3): the traffic secrets that the next keys derive from stay
//!   inside rustls, so the keys cannot follow; any post-handshake handshake message (KeyUpdate,
//!   a TLS 1.2 renegotiation) ends the connection.
//! - Its own key refresh: at the suite's confidentiality limit (2^24 records for AES-GCM) sealing
//!   stops and the connection ends, where rustls would send a KeyUpdate.

use std::io::{self, IoSlice};

use tokio_rustls::rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, Iv, MessageDecrypter, MessageEncrypter, OutboundChunks,
    OutboundPlainMessage,
};
use tokio_rustls::rustls::{
    AlertDescription, ConnectionTrafficSecrets, ContentType, ProtocolVersion, ServerConnection,
    SupportedCipherSuite,
};

/// The largest plaintext in one record (RFC 8446 5.1, RFC 5246 6.2.1).
const MAX_PLAINTEXT: usize = 16_384;
/// The largest ciphertext a record may carry (RFC 8446 5.2: plaintext + 256; RFC 5246 6.2.3: + 2048).
const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 2_048;
/// A record's header: type, legacy version, length.
const HEADER: usize = 5;

/// What the client's records said.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// Nothing that ends the connection (application data is dropped: a subscriber sends none).
    Nothing,
    /// The client's close_notify.
    Closed,
}

/// The keys and sequence numbers of one TLS connection after its handshake.
pub(crate) struct Records {
    tx: Box<dyn MessageEncrypter>,
    tx_seq: u64,
    /// Application data is sealed up to this sequence number, a close_notify one further.
    tx_limit: u64,
    rx: Box<dyn MessageDecrypter>,
    rx_seq: u64,
    tls13: bool,
    /// Received bytes of a record not whole yet (empty, and unallocated, while idle).
    partial: Vec<u8>,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

fn key_and_iv(secrets: ConnectionTrafficSecrets) -> io::Result<(AeadKey, Iv)> {
    match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv }
        | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => Ok((key, iv)),
        _ => Err(invalid(
            "the negotiated cipher suite cannot be used outside rustls",
        )),
    }
}

impl Records {
    /// Takes the keys out of `tls`, whose handshake is done and which has nothing left to send
    /// (its config must allow secret extraction: `ServerConfig::enable_secret_extraction`).
    pub(crate) fn from_connection(tls: ServerConnection) -> io::Result<Records> {
        let suite = tls
            .negotiated_cipher_suite()
            .ok_or_else(|| invalid("the TLS handshake is not done"))?;
        let secrets = tls
            .dangerous_extract_secrets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let ((tx_seq, tx), (rx_seq, rx)) = (secrets.tx, secrets.rx);
        let ((tx_key, tx_iv), (rx_key, rx_iv)) = (key_and_iv(tx)?, key_and_iv(rx)?);
        let (tx, rx, limit, tls13) = match suite {
            SupportedCipherSuite::Tls13(s) => (
                s.aead_alg.encrypter(tx_key, tx_iv),
                s.aead_alg.decrypter(rx_key, rx_iv),
                s.common.confidentiality_limit,
                true,
            ),
            SupportedCipherSuite::Tls12(s) => {
                // The extracted IV is the fixed IV followed by the explicit nonce's start
                // (`Tls12AeadAlgorithm::extract_keys`): split it as the key block was.
                let fixed = s.aead_alg.key_block_shape().fixed_iv_len;
                let (tx_fixed, tx_explicit) = tx_iv.as_ref().split_at(fixed.min(12));
                let (rx_fixed, _) = rx_iv.as_ref().split_at(fixed.min(12));
                (
                    s.aead_alg.encrypter(tx_key, tx_fixed, tx_explicit),
                    s.aead_alg.decrypter(rx_key, rx_fixed),
                    s.common.confidentiality_limit,
                    false,
                )
            }
        };
        Ok(Records {
            tx,
            tx_seq,
            // Never wrap the sequence number (rustls stops at u64::MAX - 1 too).
            tx_limit: limit.min(u64::MAX - 1).saturating_sub(1),
            rx,
            rx_seq,
            tls13,
            partial: Vec::new(),
        })
    }

    /// Lets only `left` more records of application data be sealed (tests reach the limit).
    #[cfg(test)]
    pub(crate) fn limit_after(&mut self, left: u64) {
        self.tx_limit = self.tx_seq + left;
    }

    /// Appends to `out` the records carrying `bufs` as application data.
    pub(crate) fn seal(&mut self, bufs: &[IoSlice<'_>], out: &mut Vec<u8>) -> io::Result<()> {
        let chunks: Vec<&[u8]> = bufs.iter().map(|b| &**b).collect();
        let mut rest = OutboundChunks::new(&chunks);
        while !rest.is_empty() {
            let (record, tail) = rest.split_at(MAX_PLAINTEXT);
            if self.tx_seq >= self.tx_limit {
                return Err(invalid(
                    "the cipher suite's confidentiality limit is reached: closing, the client reconnects",
                ));
            }
            self.seal_one(ContentType::ApplicationData, record, out)?;
            rest = tail;
        }
        Ok(())
    }

    /// Appends to `out` the close_notify alert.
    pub(crate) fn seal_close_notify(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if self.tx_seq > self.tx_limit {
            return Err(invalid("no sequence number left for the close_notify"));
        }
        // Level warning (1), as rustls sends it; TLS 1.3 ignores the level.
        let alert = [1, u8::from(AlertDescription::CloseNotify)];
        self.seal_one(ContentType::Alert, OutboundChunks::Single(&alert), out)
    }

    fn seal_one(
        &mut self,
        typ: ContentType,
        payload: OutboundChunks<'_>,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let message = OutboundPlainMessage {
            typ,
            // The record layer's version after the handshake, for TLS 1.2 and 1.3 alike.
            version: ProtocolVersion::TLSv1_2,
            payload,
        };
        let record = self
            .tx
            .encrypt(message, self.tx_seq)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.tx_seq += 1;
        out.extend_from_slice(&record.encode());
        Ok(())
    }

    /// Takes bytes the client sent: opens every whole record (application data is dropped) and
    /// keeps a record's beginning until the rest comes. An error ends the connection.
    pub(crate) fn receive(&mut self, bytes: &[u8]) -> io::Result<Received> {
        self.partial.extend_from_slice(bytes);
        let mut at = 0;
        let result = loop {
            let rest = &mut self.partial[at..];
            let [typ, major, minor, hi, lo, ..] = *rest else {
                break Ok(Received::Nothing);
            };
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            if len > MAX_CIPHERTEXT {
                break Err(invalid("the client sent an oversized TLS record"));
            }
            let Some(payload) = rest.get_mut(HEADER..HEADER + len) else {
                break Ok(Received::Nothing);
            };
            at += HEADER + len;
            let version = ProtocolVersion::from(u16::from_be_bytes([major, minor]));
            let message = InboundOpaqueMessage::new(ContentType::from(typ), version, payload);
            match open(&mut *self.rx, &mut self.rx_seq, self.tls13, message) {
                Ok(Received::Nothing) => {}
                other => break other,
            }
        };
        self.partial.drain(..at.min(self.partial.len()));
        if self.partial.is_empty() {
            // Free what a record took: an idle subscriber keeps no buffer.
            self.partial = Vec::new();
        }
        result
    }
}

/// Opens one record from the client and says what it means for the connection.
fn open(
    rx: &mut dyn MessageDecrypter,
    seq: &mut u64,
    tls13: bool,
    message: InboundOpaqueMessage<'_>,
) -> io::Result<Received> {
    if tls13 && message.typ != ContentType::ApplicationData {
        return Err(invalid("the client sent an unprotected TLS record"));
    }
    if *seq >= u64::MAX - 1 {
        return Err(invalid("the client's TLS sequence numbers are used up"));
    }
    let plain = rx
        .decrypt(message, *seq)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    *seq += 1;
    match plain.typ {
        ContentType::ApplicationData => Ok(Received::Nothing),
        ContentType::Alert => match *plain.payload {
            [_, d] if d == u8::from(AlertDescription::CloseNotify) => Ok(Received::Closed),
            // TLS 1.3 ignores user_canceled (RFC 8446 6.1), TLS 1.2 every warning, as rustls does.
            [_, d] if tls13 && d == u8::from(AlertDescription::UserCanceled) => {
                Ok(Received::Nothing)
            }
            [1, _] if !tls13 => Ok(Received::Nothing),
            _ => Err(invalid("the client sent a fatal TLS alert")),
        },
        // A KeyUpdate (or a TLS 1.2 renegotiation): see the module's documentation.
        ContentType::Handshake => Err(invalid(
            "the client sent a post-handshake message (KeyUpdate?): closing, the client reconnects",
        )),
        _ => Err(invalid("the client sent an unexpected TLS record")),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::Arc;

    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, ClientConnection, RootCertStore};

    use super::*;

    const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-cert.pem");
    const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-key.pem");

    fn pump(from: &mut dyn FnMut(&mut Vec<u8>), to: &mut dyn FnMut(&[u8])) -> bool {
        let mut wire = Vec::new();
        from(&mut wire);
        if !wire.is_empty() {
            to(&wire);
        }
        !wire.is_empty()
    }

    /// A client speaking `version` with `suite`, and the server's connection after the handshake.
    fn handshake(
        version: &'static tokio_rustls::rustls::SupportedProtocolVersion,
        suite: SupportedCipherSuite,
    ) -> (ClientConnection, ServerConnection) {
        let acceptor = crate::transport::tls::tls_acceptor(CERT, KEY).unwrap();
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(CERT).unwrap())
            .unwrap();
        let mut provider = tokio_rustls::rustls::crypto::ring::default_provider();
        provider.cipher_suites = vec![suite];
        let config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = ClientConnection::new(Arc::new(config), name).unwrap();
        let mut server = ServerConnection::new(acceptor.config().clone()).unwrap();
        for _ in 0..16 {
            let a = pump(
                &mut |w| while client.write_tls(w).unwrap() > 0 {},
                &mut |b| {
                    server.read_tls(&mut &b[..]).unwrap();
                    server.process_new_packets().unwrap();
                },
            );
            let b = pump(
                &mut |w| while server.write_tls(w).unwrap() > 0 {},
                &mut |b| {
                    client.read_tls(&mut &b[..]).unwrap();
                    client.process_new_packets().unwrap();
                },
            );
            if !a && !b && !server.is_handshaking() {
                break;
            }
        }
        assert!(!server.is_handshaking() && !client.is_handshaking());
        (client, server)
    }

    fn suites() -> Vec<(
        &'static tokio_rustls::rustls::SupportedProtocolVersion,
        SupportedCipherSuite,
    )> {
        use tokio_rustls::rustls::crypto::ring::cipher_suite as cs;
        use tokio_rustls::rustls::version::{TLS12, TLS13};
        vec![
            (&TLS13, cs::TLS13_AES_128_GCM_SHA256),
            (&TLS13, cs::TLS13_AES_256_GCM_SHA384),
            (&TLS13, cs::TLS13_CHACHA20_POLY1305_SHA256),
            // The test certificate's key is ECDSA.
            (&TLS12, cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
            (&TLS12, cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
            (&TLS12, cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
        ]
    }

    fn client_reads(client: &mut ClientConnection, wire: &[u8]) -> Vec<u8> {
        let (mut wire, mut plain, mut buf) = (wire, Vec::new(), [0u8; 4096]);
        while !wire.is_empty() {
            client.read_tls(&mut wire).unwrap();
            client.process_new_packets().unwrap();
            // Taken as it comes: rustls's client buffers only so much plaintext.
            while let Ok(n @ 1..) = client.reader().read(&mut buf) {
                plain.extend_from_slice(&buf[..n]);
            }
        }
        plain
    }

    #[test]
    fn a_rustls_client_reads_what_the_extracted_keys_seal_with_every_suite() {
        for (version, suite) in suites() {
            let (mut client, server) = handshake(version, suite);
            assert_eq!(server.negotiated_cipher_suite(), Some(suite));
            let mut records = Records::from_connection(server).unwrap();
            let big = vec![b'x'; 40_000];
            let mut wire = Vec::new();
            records
                .seal(&[IoSlice::new(b"hello "), IoSlice::new(&big)], &mut wire)
                .unwrap();
            records.seal(&[IoSlice::new(b"!")], &mut wire).unwrap();
            let plain = client_reads(&mut client, &wire);
            assert_eq!(plain.len(), 6 + big.len() + 1, "{suite:?}");
            assert!(plain.starts_with(b"hello xx") && plain.ends_with(b"x!"));

            // The client's application data is dropped, its close_notify ends the connection,
            // also when it arrives a byte at a time.
            client.writer().write_all(b"ignored").unwrap();
            client.send_close_notify();
            let mut sent = Vec::new();
            while client.write_tls(&mut sent).unwrap() > 0 {}
            let (last, first) = sent.split_last().unwrap();
            for byte in first {
                assert_eq!(records.receive(&[*byte]).unwrap(), Received::Nothing);
            }
            assert_eq!(records.receive(&[*last]).unwrap(), Received::Closed);
            assert_eq!(records.partial.capacity(), 0, "no buffer kept");

            // The server's close_notify reaches the client as the end of the stream.
            let mut wire = Vec::new();
            records.seal_close_notify(&mut wire).unwrap();
            client_reads(&mut client, &wire);
            let mut rest = [0u8; 8];
            assert_eq!(client.reader().read(&mut rest).unwrap(), 0, "{suite:?}");
        }
    }

    #[test]
    fn sealing_stops_at_the_limit_and_a_close_notify_still_goes_out() {
        use tokio_rustls::rustls::crypto::ring::cipher_suite as cs;
        use tokio_rustls::rustls::version::TLS13;
        let (mut client, server) = handshake(&TLS13, cs::TLS13_AES_128_GCM_SHA256);
        let mut records = Records::from_connection(server).unwrap();
        records.limit_after(2);
        let mut wire = Vec::new();
        records.seal(&[IoSlice::new(b"a")], &mut wire).unwrap();
        records.seal(&[IoSlice::new(b"b")], &mut wire).unwrap();
        assert!(records.seal(&[IoSlice::new(b"c")], &mut wire).is_err());
        records.seal_close_notify(&mut wire).unwrap();
        assert_eq!(client_reads(&mut client, &wire), b"ab");
        assert!(client.process_new_packets().unwrap().peer_has_closed());
    }

    #[test]
    fn a_key_update_or_a_forged_record_ends_the_connection() {
        use tokio_rustls::rustls::crypto::ring::cipher_suite as cs;
        use tokio_rustls::rustls::version::TLS13;
        let (mut client, server) = handshake(&TLS13, cs::TLS13_AES_128_GCM_SHA256);
        let mut records = Records::from_connection(server).unwrap();
        client.refresh_traffic_keys().unwrap();
        let mut sent = Vec::new();
        while client.write_tls(&mut sent).unwrap() > 0 {}
        assert!(records.receive(&sent).is_err(), "a KeyUpdate ends it");

        let (mut client, server) = handshake(&TLS13, cs::TLS13_AES_128_GCM_SHA256);
        let mut records = Records::from_connection(server).unwrap();
        client.send_close_notify();
        let mut sent = Vec::new();
        while client.write_tls(&mut sent).unwrap() > 0 {}
        let last = sent.len() - 1;
        sent[last] ^= 1;
        assert!(records.receive(&sent).is_err(), "a forged tag ends it");
    }
}
