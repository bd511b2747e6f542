//! Reads client frames from a socket without holding a buffer while idle.
//!
//! The reader owns a `BytesMut` that is empty and unallocated between bursts: bytes are
//! read only when the socket is readable, parsed at once, and the buffer is released as
//! soon as everything in it has been consumed. A partially received frame or a fragmented
//! message keeps its bytes until it completes.
//!
//! The text of a fragmented message is checked for UTF-8 as each fragment arrives, so an
//! invalid sequence fails the connection at once (Autobahn's "fail fast", cases 6.4.*)
//! rather than when the message ends; each byte is still checked once.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
/// How much to read at a time when no frame needs more.
const READ_CHUNK: usize = 4096;

/// A complete message or control frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    /// The client's close frame: the code (if any) and the reason.
    Close(Option<u16>, Bytes),
}

/// Why the connection cannot go on. Each maps to a close code.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("connection closed without a close frame")]
    Eof,
    /// RFC 6455 framing was violated: close with 1002.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A text message or close reason that is not UTF-8: close with 1007.
    #[error("invalid utf-8 in a text message")]
    InvalidUtf8,
    /// A message over the size limit: close with 1009.
    #[error("message larger than {0} bytes")]
    TooBig(usize),
}

/// Parses client frames into messages.
pub struct FrameReader {
    buf: BytesMut,
    /// A fragmented message in progress.
    fragments: Option<Fragments>,
    max_message: usize,
}

// === impl FrameReader ===

impl FrameReader {
    /// A reader refusing messages larger than `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        FrameReader { buf: BytesMut::new(), fragments: None, max_message }
    }

    /// Starts with bytes that arrived with the handshake.
    pub fn with_initial(max_message: usize, initial: &[u8]) -> Self {
        let mut r = FrameReader::new(max_message);
        r.buf.extend_from_slice(initial);
        r
    }

    /// Appends bytes as if they had been read from the socket: the entry for the property
    /// tests and the fuzz targets (`fuzz/`), which have no socket.
    #[doc(hidden)]
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Reads what the socket has now with `read` (a non-blocking `try_read_buf`; call when
    /// the socket is readable). Returns `Ok(false)` on a spurious wake-up, `Err(Eof)` when
    /// the peer closed the connection.
    pub fn fill(&mut self, read: impl FnOnce(&mut BytesMut) -> io::Result<usize>) -> Result<bool, ReadError> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        match read(&mut self.buf) {
            Ok(0) => Err(ReadError::Eof),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.release_if_empty();
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether bytes of an unfinished frame or message are held.
    pub fn is_mid_message(&self) -> bool {
        !self.buf.is_empty() || self.fragments.is_some()
    }

    /// Bytes currently held (buffer capacity plus fragments), for accounting and tests.
    pub fn held_bytes(&self) -> usize {
        self.buf.capacity() + self.fragments.as_ref().map_or(0, |f| f.data.capacity())
    }

    fn release_if_empty(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
    }

    /// The next complete message in what was read so far, if any.
    pub fn next_message(&mut self) -> Result<Option<Message>, ReadError> {
        loop {
            let Some(frame) = self.next_frame()? else {
                self.release_if_empty();
                return Ok(None);
            };
            if let Some(message) = self.on_frame(frame)? {
                return Ok(Some(message));
            }
        }
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        let buf = &self.buf[..];
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(ReadError::Protocol("reserved bits set without an extension"));
        }
        let opcode = b0 & 0x0F;
        if !matches!(opcode, 0x0 | 0x1 | 0x2 | 0x8 | 0x9 | 0xA) {
            return Err(ReadError::Protocol("unknown opcode"));
        }
        if b1 & 0x80 == 0 {
            return Err(ReadError::Protocol("client frames must be masked"));
        }
        let (len_bytes, short_len) = match b1 & 0x7F {
            126 => (2, 0),
            127 => (8, 0),
            n => (0, n as u64),
        };
        let header = 2 + len_bytes + 4;
        if buf.len() < header {
            return Ok(None);
        }
        let len = match len_bytes {
            0 => short_len,
            2 => u16::from_be_bytes([buf[2], buf[3]]) as u64,
            _ => u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")),
        };
        if len >> 63 != 0 {
            return Err(ReadError::Protocol("64-bit length with the most significant bit set"));
        }
        let is_control = opcode >= 0x8;
        if is_control && !fin {
            return Err(ReadError::Protocol("fragmented control frame"));
        }
        if is_control && len > 125 {
            return Err(ReadError::Protocol("control frame longer than 125 bytes"));
        }
        let so_far = if is_control { 0 } else { self.fragments.as_ref().map_or(0, |f| f.data.len()) as u64 };
        if so_far.saturating_add(len) > self.max_message as u64 {
            return Err(ReadError::TooBig(self.max_message));
        }
        let len = len as usize;
        if buf.len() < header + len {
            self.buf.reserve(header + len - self.buf.len());
            return Ok(None);
        }
        let mask: [u8; 4] = buf[header - 4..header].try_into().expect("4 bytes");
        self.buf.advance(header);
        let mut payload = self.buf.split_to(len);
        fastwebsockets::unmask(&mut payload, mask);
        Ok(Some(Frame { fin, opcode, payload }))
    }

    fn on_frame(&mut self, frame: Frame) -> Result<Option<Message>, ReadError> {
        let Frame { fin, opcode, payload } = frame;
        match opcode {
            0x0 => {
                let Some(fragments) = self.fragments.as_mut() else {
                    return Err(ReadError::Protocol("continuation frame without a message to continue"));
                };
                fragments.data.extend_from_slice(&payload);
                if !fin {
                    fragments.check_utf8()?;
                    return Ok(None);
                }
                let Fragments { opcode, data, utf8_checked } = self.fragments.take().expect("checked above");
                complete(opcode, data, utf8_checked)
            }
            0x1 | 0x2 => {
                if self.fragments.is_some() {
                    return Err(ReadError::Protocol("new message before the fragmented one ended"));
                }
                if fin {
                    return complete(opcode, payload, 0);
                }
                let mut fragments = Fragments { opcode, data: payload, utf8_checked: 0 };
                fragments.check_utf8()?;
                self.fragments = Some(fragments);
                Ok(None)
            }
            0x8 => close_message(payload).map(Some),
            0x9 => Ok(Some(Message::Ping(payload.freeze()))),
            _ => Ok(Some(Message::Pong)),
        }
    }
}

struct Frame {
    fin: bool,
    opcode: u8,
    payload: BytesMut,
}

/// The fragments so far of a message.
struct Fragments {
    opcode: u8,
    data: BytesMut,
    /// For text: how many leading bytes of `data` are known to be valid UTF-8.
    utf8_checked: usize,
}

impl Fragments {
    /// Checks the text received since the last check. An invalid sequence is an error at
    /// once; an incomplete one at the end may still be completed by the next fragment.
    fn check_utf8(&mut self) -> Result<(), ReadError> {
        if self.opcode != 0x1 {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(&self.data[self.utf8_checked..]) {
            Ok(_) => self.utf8_checked = self.data.len(),
            Err(e) if e.error_len().is_none() => self.utf8_checked += e.valid_up_to(),
            Err(_) => return Err(ReadError::InvalidUtf8),
        }
        Ok(())
    }
}

/// The message of a final frame; `utf8_checked` leading bytes of a text are already known
/// to be valid.
fn complete(opcode: u8, data: BytesMut, utf8_checked: usize) -> Result<Option<Message>, ReadError> {
    if opcode == 0x1 {
        if simdutf8::basic::from_utf8(&data[utf8_checked..]).is_err() {
            return Err(ReadError::InvalidUtf8);
        }
        Ok(Some(Message::Text(data.freeze())))
    } else {
        Ok(Some(Message::Binary(data.freeze())))
    }
}

fn close_message(payload: BytesMut) -> Result<Message, ReadError> {
    match payload.len() {
        0 => Ok(Message::Close(None, Bytes::new())),
        1 => Err(ReadError::Protocol("close frame with a one-byte payload")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !fastwebsockets::CloseCode::from(code).is_allowed() || !(1000..5000).contains(&code) {
                return Err(ReadError::Protocol("invalid close code"));
            }
            if simdutf8::basic::from_utf8(&payload[2..]).is_err() {
                return Err(ReadError::InvalidUtf8);
            }
            let mut payload = payload.freeze();
            payload.advance(2);
            Ok(Message::Close(Some(code), payload))
        }
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
