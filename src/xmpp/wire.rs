//! What goes on the wire: the exact size of an outgoing stanza, and payloads that
//! are written to the stream as bytes already serialised, without a tree.
//!
//! # Why splicing
//! tokio-xmpp 6 sends only `xmpp-parsers` stanzas, whose payloads are minidom
//! trees: a year of half-hours would be 17,520 elements built, serialised item by
//! item by rxml, kept until the server acknowledges them (XEP-0198) and freed.
//! The Quoalise encoder writes the same payload as bytes about fifty times
//! faster. So a data answer is sent as the stanza with a small PLACEHOLDER
//! element where its payload belongs, and the transport under tokio-xmpp's XML
//! stream ([`SpliceIo`]) replaces the placeholder's bytes by the payload's bytes
//! as they leave. Everything else (stream management, resumption, reconnection)
//! stays tokio-xmpp's.
//!
//! - The placeholder's namespace carries 128 random bits chosen at start: no
//!   peer can make the agent send one (peers' text is escaped by rxml, so `<`
//!   never appears in it, and no peer element is echoed).
//! - A payload stays in the [`Splices`] table until tokio-xmpp no longer holds
//!   its stanza (acknowledged by the server, or dropped): a stanza resent after a
//!   stream resumption is spliced again.
//! - A placeholder whose payload is missing, or cut by the buffer, fails the
//!   write (the connection is then re-established): the placeholder never
//!   reaches a peer.
//!
//! # Exact sizes
//! [`stanza_bytes`] serialises a stanza with an rxml encoder set up as the
//! stream's own (the `stream` prefix and `jabber:client` declared), so it counts
//! exactly the bytes tokio-xmpp writes for it; a spliced stanza's size is that,
//! less the placeholder, plus the payload. Servers count the same bytes (Prosody:
//! the bytes of a top-level element, refused when over `c2s_stanza_size_limit`).

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use minidom::Element;
use minidom::rxml::{self, Namespace, NcName};
use rxml::writer::{Encoder, SimpleNamespaces, TrackNamespace};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};
use tokio_xmpp::Stanza;
use xso::AsXml;

/// The XML stream namespace (`stream:` prefix), as the stream declares it.
const NS_STREAM: &str = "http://etherx.jabber.org/streams";
/// The client stream's default namespace.
const NS_CLIENT: &str = "jabber:client";
/// Name of the placeholder element and of its id attribute.
const PLACEHOLDER: &str = "splice";
const PLACEHOLDER_ID: &str = "id";

/// The bytes tokio-xmpp writes for `stanza` on a client stream.
pub fn stanza_bytes(stanza: &Stanza) -> io::Result<Vec<u8>> {
    let mut encoder = Encoder::<SimpleNamespaces>::new();
    let stream_prefix =
        NcName::try_from("stream").map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    encoder
        .ns_tracker_mut()
        .declare_fixed(Some(&stream_prefix), Namespace::from(NS_STREAM));
    encoder
        .ns_tracker_mut()
        .declare_fixed(None, Namespace::from(NS_CLIENT));
    // Stanzas are children of `<stream:stream>`, on which the namespaces are
    // declared: open it as the stream does, and count from there.
    let mut out = Vec::with_capacity(512);
    let stream_name =
        NcName::try_from("stream").map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    for item in [
        rxml::Item::ElementHeadStart(Namespace::from(NS_STREAM), &stream_name),
        rxml::Item::ElementHeadEnd,
    ] {
        encoder
            .encode(item, &mut out)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    }
    out.clear();
    let items = stanza
        .as_xml_iter()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    for item in items {
        let item = item.map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        encoder
            .encode(item.as_rxml_item(), &mut out)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    }
    Ok(out)
}

/// The largest stanza the agent may send: `xmpp.max_stanza_bytes`, or what the
/// server advertised for the current stream (XEP-0478) when that is lower.
/// Cheap to clone; all clones see the server's latest figure.
#[derive(Debug, Clone)]
pub struct StanzaLimit {
    configured: usize,
    /// 0: nothing advertised.
    advertised: Arc<AtomicUsize>,
}

impl StanzaLimit {
    pub fn new(configured: usize) -> Self {
        StanzaLimit {
            configured,
            advertised: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The limit in force.
    pub fn get(&self) -> usize {
        match self.advertised() {
            Some(advertised) => advertised.min(self.configured),
            None => self.configured,
        }
    }

    /// What the server advertised on the latest stream, if anything.
    pub fn advertised(&self) -> Option<usize> {
        match self.advertised.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    /// Records what a new stream's server advertised; logs when it changes.
    pub fn set_advertised(&self, advertised: Option<usize>) {
        let previous = self
            .advertised
            .swap(advertised.unwrap_or(0), Ordering::Relaxed);
        if previous == advertised.unwrap_or(0) {
            return;
        }
        match advertised {
            Some(n) if n < self.configured => tracing::info!(
                server_max_bytes = n,
                configured = self.configured,
                "XMPP: the server accepts stanzas of at most {n} bytes (XEP-0478), less than xmpp.max_stanza_bytes: answers are sized to fit it"
            ),
            Some(n) => tracing::info!(
                server_max_bytes = n,
                configured = self.configured,
                "XMPP: the server accepts stanzas of up to {n} bytes (XEP-0478); answers stay within xmpp.max_stanza_bytes"
            ),
            None => tracing::debug!(
                "XMPP: the server advertises no stanza size limit; using xmpp.max_stanza_bytes"
            ),
        }
    }
}

/// The size of `stanza` on the wire, in bytes.
pub fn stanza_size(stanza: &Stanza) -> io::Result<usize> {
    stanza_bytes(stanza).map(|b| b.len())
}

/// A payload to splice into one stanza: its placeholder element, to put where
/// the payload belongs, and its bytes.
#[derive(Debug, Clone)]
pub struct Splice {
    id: u64,
    marker: Bytes,
    payload: Bytes,
    placeholder: Element,
}

impl Splice {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The element standing for the payload in the stanza.
    pub fn placeholder(&self) -> Element {
        self.placeholder.clone()
    }

    /// The placeholder's bytes on the wire (what is replaced).
    pub fn marker_len(&self) -> usize {
        self.marker.len()
    }

    /// What replacing the placeholder by the payload adds to a stanza's size
    /// (negative for a payload smaller than the placeholder).
    pub fn growth(&self) -> isize {
        self.payload.len() as isize - self.marker.len() as isize
    }
}

struct SplicesInner {
    /// The placeholder namespace, unique to this process.
    namespace: String,
    /// The bytes every marker starts with: `<splice xmlns='…'`.
    prefix: Vec<u8>,
    next: AtomicU64,
    /// Payloads by id, while tokio-xmpp may still (re)send their stanza.
    live: Mutex<HashMap<u64, Bytes>>,
}

/// The payloads waiting to be written, shared by the agent's handle (which adds
/// them), the session (which drops them once the server has them) and each
/// connection's [`SpliceIo`] (which writes them). Cheap to clone.
#[derive(Clone)]
pub struct Splices {
    inner: Arc<SplicesInner>,
}

impl std::fmt::Debug for Splices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Splices")
            .field("live", &self.live().len())
            .finish()
    }
}

impl Default for Splices {
    fn default() -> Self {
        Splices::new()
    }
}

impl Splices {
    pub fn new() -> Self {
        let namespace = format!("urn:quoalise-agent:splice:{:032x}", rand::random::<u128>());
        let prefix = format!("<{PLACEHOLDER} xmlns='{namespace}'").into_bytes();
        Splices {
            inner: Arc::new(SplicesInner {
                namespace,
                prefix,
                next: AtomicU64::new(1),
                live: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Bytes>> {
        // Held for one map operation, never across an await.
        self.inner.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Prepares `payload` (well-formed XML: one element) for one stanza. Nothing
    /// is registered until [`Splices::register`].
    pub fn prepare(&self, payload: Bytes) -> Splice {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let mut placeholder = Element::bare(PLACEHOLDER, self.inner.namespace.as_str());
        placeholder.set_attr(
            Namespace::NONE,
            rxml::xml_ncname!("id").to_owned(),
            id.to_string(),
        );
        // rxml writes an empty element with its namespace declared as the
        // default one (the parent's is another) and an end tag.
        let marker = Bytes::from(format!(
            "<{PLACEHOLDER} xmlns='{}' {PLACEHOLDER_ID}='{id}'></{PLACEHOLDER}>",
            self.inner.namespace
        ));
        Splice {
            id,
            marker,
            payload,
            placeholder,
        }
    }

    /// Makes `splice`'s payload available to the connections.
    pub fn register(&self, splice: &Splice) {
        self.live().insert(splice.id, splice.payload.clone());
    }

    /// Drops a payload once its stanza is no longer held by tokio-xmpp.
    pub fn release(&self, id: u64) {
        self.live().remove(&id);
    }

    /// Payloads registered and not yet released.
    pub fn pending(&self) -> usize {
        self.live().len()
    }

    fn payload(&self, id: u64) -> Option<Bytes> {
        self.live().get(&id).cloned()
    }
}

/// A connection's transport with placeholders replaced by their payloads on the
/// way out; reads pass through.
pub struct SpliceIo<S> {
    inner: S,
    splices: Splices,
    /// Payload bytes still to write before taking more input.
    pending: Bytes,
}

impl<S> SpliceIo<S> {
    pub fn new(inner: S, splices: Splices) -> Self {
        SpliceIo {
            inner,
            splices,
            pending: Bytes::new(),
        }
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// Where the input holds a marker: `Ok(None)` none, `Ok(Some((at, len, id)))`
/// one at `at`, `len` bytes long.
fn find_marker(prefix: &[u8], input: &[u8]) -> io::Result<Option<(usize, usize, u64)>> {
    let Some(at) = memchr::memmem::find(input, prefix) else {
        // A marker cut at the end of the input cannot happen (tokio-xmpp hands
        // over whole stanzas), and is not looked for.
        return Ok(None);
    };
    let cut = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "a payload placeholder is cut in the output buffer",
        )
    };
    let rest = &input[at + prefix.len()..];
    let head = format!(" {PLACEHOLDER_ID}='");
    let rest = rest.strip_prefix(head.as_bytes()).ok_or_else(cut)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let id: u64 = std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(cut)?;
    let tail = format!("'></{PLACEHOLDER}>");
    if !rest[digits..].starts_with(tail.as_bytes()) {
        return Err(cut());
    }
    let len = prefix.len() + head.len() + digits + tail.len();
    Ok(Some((at, len, id)))
}

impl<S: AsyncWrite + Unpin> SpliceIo<S> {
    /// Writes what is pending; ready once nothing is.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let _ = self.pending.split_to(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SpliceIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        match find_marker(&this.splices.inner.prefix, buf)? {
            None => Pin::new(&mut this.inner).poll_write(cx, buf),
            Some((0, len, id)) => {
                let payload = this.splices.payload(id).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("payload {id} to splice is not registered"),
                    )
                })?;
                // The marker is consumed; its payload goes out before any more
                // input is taken (here if the transport is ready, else on the
                // next write or flush).
                this.pending = payload;
                match this.poll_pending(cx) {
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    _ => Poll::Ready(Ok(len)),
                }
            }
            Some((at, _, _)) => Pin::new(&mut this.inner).poll_write(cx, &buf[..at]),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SpliceIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncBufRead + Unpin> AsyncBufRead for SpliceIo<S> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().inner).poll_fill_buf(cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.get_mut().inner).consume(amt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use xmpp_parsers::iq::Iq;
    use xmpp_parsers::jid::Jid;

    fn iq_with(payload: Element) -> Stanza {
        Stanza::Iq(Iq::Result {
            from: None,
            to: Some(Jid::new("peer@example.org/app").unwrap()),
            id: "ab63a".to_owned(),
            payload: Some(payload),
        })
    }

    #[test]
    fn the_marker_is_what_rxml_writes_for_the_placeholder() {
        let splices = Splices::new();
        let splice = splices.prepare(Bytes::from_static(b"<x xmlns='urn:x'/>"));
        let mut command = Element::bare("command", "http://jabber.org/protocol/commands");
        command.append_child(splice.placeholder());
        let bytes = stanza_bytes(&iq_with(command)).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let marker = std::str::from_utf8(&splice.marker).unwrap();
        assert!(text.contains(marker), "{text}\n{marker}");
        let (at, len, id) = find_marker(&splices.inner.prefix, &bytes).unwrap().unwrap();
        assert_eq!(&bytes[at..at + len], splice.marker.as_ref());
        assert_eq!(id, splice.id);
    }

    #[tokio::test]
    async fn placeholders_are_replaced_by_their_payloads() {
        let splices = Splices::new();
        let a = splices.prepare(Bytes::from_static(b"<a xmlns='urn:a'>1</a>"));
        let b = splices.prepare(Bytes::from(vec![b'x'; 100_000]));
        splices.register(&a);
        splices.register(&b);
        let mut out = Vec::new();
        for splice in [&a, &b] {
            let mut command = Element::bare("command", "http://jabber.org/protocol/commands");
            command.append_child(splice.placeholder());
            out.push(stanza_bytes(&iq_with(command)).unwrap());
        }
        let (client, mut server) = tokio::io::duplex(1024);
        let writer = tokio::spawn(async move {
            let mut io = SpliceIo::new(client, splices.clone());
            // Whole stanzas, as tokio-xmpp hands them over; the small duplex
            // buffer takes them a little at a time.
            for stanza in out {
                io.write_all(&stanza).await.unwrap();
            }
            io.shutdown().await.unwrap();
            splices
        });
        let mut received = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut server, &mut received)
            .await
            .unwrap();
        let splices = writer.await.unwrap();
        let text = String::from_utf8_lossy(&received);
        assert!(text.contains("<command xmlns='http://jabber.org/protocol/commands'><a xmlns='urn:a'>1</a></command>"), "{text}");
        assert!(text.contains(&"x".repeat(100_000)));
        assert!(!text.contains(PLACEHOLDER), "{text}");
        let sizes: usize = [&a, &b]
            .iter()
            .map(|s| {
                let mut command = Element::bare("command", "http://jabber.org/protocol/commands");
                command.append_child(s.placeholder());
                (stanza_size(&iq_with(command)).unwrap() as isize + s.growth()) as usize
            })
            .sum();
        assert_eq!(sizes, received.len(), "sizes are exact");
        splices.release(a.id());
        splices.release(b.id());
        assert_eq!(splices.pending(), 0);
    }

    #[tokio::test]
    async fn an_unregistered_placeholder_fails_the_write() {
        let splices = Splices::new();
        let lost = splices.prepare(Bytes::from_static(b"<a/>"));
        let mut command = Element::bare("command", "http://jabber.org/protocol/commands");
        command.append_child(lost.placeholder());
        let bytes = stanza_bytes(&iq_with(command)).unwrap();
        let mut io = SpliceIo::new(Vec::<u8>::new(), splices);
        let err = io.write_all(&bytes).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(!String::from_utf8_lossy(io.get_ref()).contains(PLACEHOLDER));
    }

    #[test]
    fn peer_text_cannot_forge_a_marker() {
        let splices = Splices::new();
        let forged = format!(
            "<{PLACEHOLDER} xmlns='{}' id='1'></{PLACEHOLDER}>",
            splices.inner.namespace
        );
        let mut command = Element::bare("command", "http://jabber.org/protocol/commands");
        command.append_text_node(forged);
        let bytes = stanza_bytes(&iq_with(command)).unwrap();
        assert!(
            find_marker(&splices.inner.prefix, &bytes)
                .unwrap()
                .is_none()
        );
    }
}
