//! Server-sent events read as the bytes go by (the WHATWG HTML "event stream" format): lines
//! end in LF, CRLF or CR; `event:` names an event, `data:` lines add to its data, a blank line
//! dispatches it. Memory stays bounded whatever the stream sends: a line or an event's data
//! longer than [`MAX_EVENT`] is not parsed (it still passes through untouched).
//!
//! Without dropping, the bytes are never held: [`SseReader::feed`] only looks at them. With
//! dropping (to remove an event the client did not ask for), an event's bytes are held until
//! its blank line — the point at which a client would dispatch it anyway — and an event longer
//! than [`MAX_EVENT`] is let through as it comes.

use bytes::{Bytes, BytesMut};

/// The longest event (its data, or the held bytes) that is parsed or held.
pub const MAX_EVENT: usize = 64 * 1024;

/// One dispatched event.
#[derive(Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `event:` field, if any.
    pub name: Option<&'a [u8]>,
    /// The data lines, joined by LF.
    pub data: &'a [u8],
}

/// The reader's state between chunks.
#[derive(Debug, Default)]
pub struct SseReader {
    /// The current line, up to [`MAX_EVENT`].
    line: Vec<u8>,
    line_too_long: bool,
    /// The current event's data and name.
    data: Vec<u8>,
    name: Vec<u8>,
    has_name: bool,
    event_too_long: bool,
    /// The last chunk ended in CR: a LF opening the next is part of that line end.
    after_cr: bool,
    /// Dropping mode: the bytes of the current event, not yet passed on.
    holding: bool,
    held: BytesMut,
    held_passed: bool,
    /// An event was dispatched at a CR: a LF right after belongs to it (kept or dropped with it).
    lf_of_dispatched: Option<bool>,
}

impl SseReader {
    /// A reader that may drop events (and so holds each event until it is complete).
    pub fn dropping() -> Self {
        SseReader {
            holding: true,
            ..SseReader::default()
        }
    }

    /// Reads `chunk`; `on_event` says for each dispatched event whether it is kept. Returns
    /// what the client receives: `chunk` itself unless the reader drops events.
    pub fn feed(&mut self, chunk: Bytes, on_event: &mut impl FnMut(Event<'_>) -> bool) -> Bytes {
        let mut out = BytesMut::new();
        let mut start = 0;
        let bytes = &chunk[..];
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if self.after_cr {
                self.after_cr = false;
                let dispatched = self.lf_of_dispatched.take();
                if b == b'\n' {
                    if let (true, Some(keep)) = (self.holding, dispatched) {
                        if keep {
                            out.extend_from_slice(b"\n");
                        }
                        start = i + 1;
                    }
                    i += 1;
                    continue;
                }
            }
            if b == b'\n' || b == b'\r' {
                self.after_cr = b == b'\r';
                let end_of_event = self.line.is_empty() && !self.line_too_long;
                self.end_line();
                if end_of_event {
                    let keep = self.dispatch(on_event);
                    if self.holding {
                        self.held.extend_from_slice(&bytes[start..=i]);
                        start = i + 1;
                        if keep || self.held_passed {
                            out.extend_from_slice(&self.held);
                        }
                        if b == b'\r' {
                            self.lf_of_dispatched = Some(keep || self.held_passed);
                        }
                        self.held.clear();
                        self.held_passed = false;
                    }
                }
            } else if self.line.len() < MAX_EVENT {
                self.line.push(b);
            } else {
                self.line_too_long = true;
            }
            i += 1;
        }
        if !self.holding {
            return chunk;
        }
        self.held.extend_from_slice(&bytes[start..]);
        if self.held.len() > MAX_EVENT {
            // Too long to hold: this event goes through as it comes, and can no longer be
            // dropped.
            out.extend_from_slice(&self.held);
            self.held.clear();
            self.held_passed = true;
        } else if self.held_passed {
            out.extend_from_slice(&self.held);
            self.held.clear();
        }
        out.freeze()
    }

    /// What is still held when the stream ends (an event without its blank line).
    pub fn finish(&mut self) -> Bytes {
        std::mem::take(&mut self.held).freeze()
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        if self.line_too_long {
            self.line_too_long = false;
            self.event_too_long = true;
        } else if !line.is_empty() {
            let (field, value) = match line.iter().position(|b| *b == b':') {
                Some(colon) => {
                    let value = &line[colon + 1..];
                    (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (&line[..], &[][..]),
            };
            match field {
                b"data" => {
                    if self.data.len() + value.len() + 1 > MAX_EVENT {
                        self.event_too_long = true;
                    } else {
                        if !self.data.is_empty() {
                            self.data.push(b'\n');
                        }
                        self.data.extend_from_slice(value);
                    }
                }
                b"event" => {
                    self.name.clear();
                    self.name.extend_from_slice(value);
                    self.has_name = true;
                }
                _ => {}
            }
        }
        // The allocation is kept for the next line.
        self.line = line;
        self.line.clear();
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(Event<'_>) -> bool) -> bool {
        let keep = if self.event_too_long || (self.data.is_empty() && !self.has_name) {
            true
        } else {
            on_event(Event {
                name: self.has_name.then_some(&self.name[..]),
                data: &self.data,
            })
        };
        self.data.clear();
        self.name.clear();
        self.has_name = false;
        self.event_too_long = false;
        keep
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const STREAM: &str = "event: a\ndata: {\"n\":1}\n\n: comment\r\ndata: two\r\ndata: lines\r\n\r\ndata: drop me\n\ndata: [DONE]\n\n";

    fn run(reader: &mut SseReader, pieces: &[&[u8]]) -> (Vec<(Option<String>, String)>, Vec<u8>) {
        let mut events = Vec::new();
        let mut out = Vec::new();
        for piece in pieces {
            let passed = reader.feed(Bytes::copy_from_slice(piece), &mut |event| {
                let data = String::from_utf8(event.data.to_vec()).unwrap();
                let keep = data != "drop me";
                events.push((
                    event.name.map(|n| String::from_utf8(n.to_vec()).unwrap()),
                    data,
                ));
                keep
            });
            out.extend_from_slice(&passed);
        }
        out.extend_from_slice(&reader.finish());
        (events, out)
    }

    #[test]
    fn every_split_of_the_stream_reads_the_same_events() {
        let bytes = STREAM.as_bytes();
        let expected = vec![
            (Some("a".to_string()), "{\"n\":1}".to_string()),
            (None, "two\nlines".to_string()),
            (None, "drop me".to_string()),
            (None, "[DONE]".to_string()),
        ];
        for a in 0..bytes.len() {
            for b in a..bytes.len() {
                let pieces = [&bytes[..a], &bytes[a..b], &bytes[b..]];
                let (events, out) = run(&mut SseReader::default(), &pieces);
                assert_eq!(events, expected, "split at {a}, {b}");
                assert_eq!(out, bytes);
                let (events, out) = run(&mut SseReader::dropping(), &pieces);
                assert_eq!(events, expected, "split at {a}, {b}");
                let kept = STREAM.replace("data: drop me\n\n", "");
                assert_eq!(String::from_utf8(out).unwrap(), kept, "split at {a}, {b}");
            }
        }
    }

    #[test]
    fn an_oversized_event_passes_through_unparsed_with_bounded_memory() {
        let big = format!("data: {}\n\ndata: after\n\n", "x".repeat(3 * MAX_EVENT));
        for mut reader in [SseReader::default(), SseReader::dropping()] {
            let mut out = Vec::new();
            let mut events = Vec::new();
            for piece in big.as_bytes().chunks(1000) {
                let passed = reader.feed(Bytes::copy_from_slice(piece), &mut |e| {
                    events.push(e.data.to_vec());
                    false
                });
                out.extend_from_slice(&passed);
                assert!(reader.line.capacity() <= 2 * MAX_EVENT);
                assert!(reader.held.len() <= MAX_EVENT + 1000);
            }
            assert_eq!(events, vec![b"after".to_vec()]);
            if reader.holding {
                assert_eq!(out, big.as_bytes()[..big.len() - "data: after\n\n".len()]);
            } else {
                assert_eq!(out, big.as_bytes());
            }
        }
    }
}
