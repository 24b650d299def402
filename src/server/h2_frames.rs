//! The header timeout on HTTP/2: an IO wrapper that follows the frames a client sends (RFC 9113
//! §4.1: a 9-octet header with a 24-bit length, then the payload) and tells the connection's
//! [`Activity`] when a request head is in progress, so that `header_timeout` bounds it as it
//! bounds an HTTP/1.1 head.
//!
//! A head is in progress, and timed:
//! - from the connection's start until its first request's header block is complete (so a
//!   connection that sends the preface and nothing more cannot hold its slot);
//! - while a header block is open: a HEADERS frame without END_HEADERS and the CONTINUATION
//!   frames that must follow it (RFC 9113 §6.10), each stream's headers, however they trickle;
//! - while any frame other than DATA is incomplete (a PING sent one byte at a time).
//!
//! DATA payloads are bodies, which `header_timeout` does not bound on HTTP/1.1 either. The
//! frames are only measured, never changed or buffered: the wrapper skips over payloads, so its
//! cost is a few comparisons per frame.

use std::sync::Arc;

use super::activity::{Activity, Observed, Observer};

/// The client connection preface (RFC 9113 §3.4), which precedes the first frame.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

/// Where the client is in its stream of frames.
#[derive(Debug)]
struct Frames {
    preface_left: usize,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    kind: u8,
    flags: u8,
    payload_left: usize,
    /// A header block is open: its END_HEADERS frame has not been read yet.
    block_open: bool,
    /// No request's header block has been completed on this connection yet.
    first_request: bool,
}

/// How a read changed the head in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// As it was.
    Same,
    /// A head began (or one ended and another began within the read): time it from now.
    Began,
    /// No head is in progress any more.
    Ended,
}

impl Frames {
    fn new() -> Self {
        Frames {
            preface_left: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            kind: DATA,
            flags: 0,
            payload_left: 0,
            block_open: false,
            first_request: true,
        }
    }

    /// Whether a head is in progress.
    fn pending(&self) -> bool {
        self.first_request
            || self.block_open
            || self.header_len > 0
            || (self.payload_left > 0 && self.kind != DATA)
    }

    /// Follows `bytes`, the next ones the client sent.
    fn feed(&mut self, mut bytes: &[u8]) -> Change {
        let before = self.pending();
        let mut dipped = false;
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len());
                self.preface_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
                if self.payload_left == 0 {
                    self.frame_done();
                }
            } else {
                let n = (FRAME_HEADER_LEN - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == FRAME_HEADER_LEN {
                    self.header_len = 0;
                    let [a, b, c, kind, flags, ..] = self.header;
                    self.payload_left = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                    self.kind = kind;
                    self.flags = flags;
                    if self.payload_left == 0 {
                        self.frame_done();
                    }
                }
            }
            dipped |= !self.pending();
        }
        match (before, self.pending()) {
            (true, false) => Change::Ended,
            (false, true) => Change::Began,
            (true, true) if dipped => Change::Began,
            _ => Change::Same,
        }
    }

    /// A whole frame has been read.
    fn frame_done(&mut self) {
        if matches!(self.kind, HEADERS | PUSH_PROMISE | CONTINUATION) {
            self.block_open = self.flags & END_HEADERS == 0;
            if !self.block_open {
                self.first_request = false;
            }
        }
    }
}

/// An HTTP/2 connection's IO (above TLS), with request heads timed into its [`Activity`].
pub type FrameClock<T> = Observed<T, HeadTimer>;

/// Follows the frames read and reports heads to the connection's [`Activity`].
#[derive(Debug)]
pub struct HeadTimer {
    activity: Arc<Activity>,
    frames: Frames,
}

impl HeadTimer {
    /// A timer for a connection whose first head is already pending in `activity`.
    pub fn new(activity: Arc<Activity>) -> Self {
        HeadTimer {
            activity,
            frames: Frames::new(),
        }
    }
}

impl Observer for HeadTimer {
    fn read(&mut self, bytes: &[u8]) {
        match self.frames.feed(bytes) {
            Change::Same => {}
            Change::Began => self.activity.head_began(),
            Change::Ended => self.activity.head_ended(),
        }
    }

    /// Writes are the gateway's; idleness is [`super::activity::TrackedIo`]'s to note.
    fn wrote(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut bytes = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    fn settings() -> Vec<u8> {
        frame(0x4, 0, &[])
    }

    #[test]
    fn the_first_head_is_pending_until_a_header_block_completes() {
        let mut frames = Frames::new();
        assert!(frames.pending());
        assert_eq!(frames.feed(PREFACE), Change::Same);
        assert_eq!(
            frames.feed(&settings()),
            Change::Same,
            "SETTINGS is no request"
        );
        assert_eq!(
            frames.feed(&frame(HEADERS, END_HEADERS, b"hpack")),
            Change::Ended
        );
        assert!(!frames.pending());
    }

    #[test]
    fn a_trickled_header_block_stays_pending_until_its_end_headers() {
        let mut frames = Frames::new();
        let mut opening = PREFACE.to_vec();
        opening.extend(frame(HEADERS, END_HEADERS, b"x"));
        assert_eq!(frames.feed(&opening), Change::Ended);
        // HEADERS without END_HEADERS, byte by byte, then its CONTINUATION.
        let mut block = frame(HEADERS, 0, b"abc");
        block.extend(frame(CONTINUATION, 0, b"def"));
        let end = frame(CONTINUATION, END_HEADERS, b"g");
        assert_eq!(frames.feed(&block[..1]), Change::Began);
        for byte in &block[1..] {
            assert_eq!(frames.feed(std::slice::from_ref(byte)), Change::Same);
            assert!(frames.pending());
        }
        assert_eq!(frames.feed(&end), Change::Ended);
    }

    #[test]
    fn data_payloads_are_not_timed_but_other_frames_are() {
        let mut frames = Frames::new();
        let mut opening = PREFACE.to_vec();
        opening.extend(frame(HEADERS, END_HEADERS, b"x"));
        frames.feed(&opening);
        let data = frame(DATA, 0, &[0; 100]);
        assert_eq!(frames.feed(&data[..5]), Change::Began, "a frame header");
        assert_eq!(frames.feed(&data[5..12]), Change::Ended, "a DATA payload");
        assert!(!frames.pending(), "a DATA payload in progress is a body");
        assert_eq!(frames.feed(&data[12..]), Change::Same);
        let ping = frame(0x6, 0, &[0; 8]);
        assert_eq!(frames.feed(&ping[..10]), Change::Began);
        assert_eq!(frames.feed(&ping[10..]), Change::Ended);
    }

    #[test]
    fn a_head_ending_and_another_beginning_in_one_read_restarts_the_clock() {
        let mut frames = Frames::new();
        let mut opening = PREFACE.to_vec();
        opening.extend(frame(HEADERS, END_HEADERS, b"x"));
        frames.feed(&opening);
        let ping = frame(0x6, 0, &[0; 8]);
        frames.feed(&ping[..5]);
        let mut rest = ping[5..].to_vec();
        rest.extend_from_slice(&ping[..3]);
        assert_eq!(frames.feed(&rest), Change::Began);
    }
}
