//! The response body of a metered request: it passes every frame on as it arrives and reads
//! the usage from the bytes on the way (SSE event by event; JSON kept whole up to
//! [`MAX_JSON`], beyond that only its last [`JSON_TAIL`] bytes, where usage is). When the body
//! ends, fails, or is dropped because the client went away, the usage is settled once: the
//! provider's figures if it reported them, else an estimate from the bytes seen, marked so.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::sse::SseReader;
use super::usage::UsageReader;
use super::{Meter, Reservation, Settlement, Usage};

/// A JSON body up to this size is parsed whole.
pub const MAX_JSON: usize = 1024 * 1024;
/// Of a larger one, this much of its end is kept.
pub const JSON_TAIL: usize = 64 * 1024;

/// How the response is read.
#[derive(Debug)]
enum Reading {
    /// `text/event-stream`.
    Events(SseReader),
    /// Anything else, read as JSON: the body so far, or its tail once past [`MAX_JSON`].
    Json { kept: Vec<u8>, tail_only: bool },
}

#[derive(Debug)]
struct Tracking {
    meter: Meter,
    reservation: Reservation,
    settlement: Settlement,
    usage: UsageReader,
    reading: Reading,
    strips: bool,
}

/// A response body that meters what passes through it.
#[derive(Debug)]
pub struct MeteredBody<B> {
    inner: B,
    tracking: Option<Tracking>,
    ended: bool,
}

impl<B> MeteredBody<B> {
    /// Wraps `inner`. `event_stream`: the response is SSE; `strip_usage_chunk`: the gateway
    /// asked for the usage chunk, which the client must not receive.
    pub fn new(
        inner: B,
        meter: Meter,
        reservation: Reservation,
        settlement: Settlement,
        usage: UsageReader,
        event_stream: bool,
        strip_usage_chunk: bool,
    ) -> Self {
        let strips = event_stream && strip_usage_chunk;
        let reading = if !event_stream {
            Reading::Json {
                kept: Vec::new(),
                tail_only: false,
            }
        } else if strips {
            Reading::Events(SseReader::dropping())
        } else {
            Reading::Events(SseReader::default())
        };
        MeteredBody {
            inner,
            tracking: Some(Tracking {
                meter,
                reservation,
                settlement,
                usage,
                reading,
                strips,
            }),
            ended: false,
        }
    }

    /// Whether the body changes what passes (and so its length).
    pub fn strips(&self) -> bool {
        self.tracking.as_ref().is_some_and(|t| t.strips)
    }
}

impl Tracking {
    fn observe(&mut self, data: Bytes) -> Bytes {
        let usage = &mut self.usage;
        match &mut self.reading {
            Reading::Events(reader) => {
                let strips = self.strips;
                reader.feed(data, &mut |event| {
                    let usage_chunk = usage.event(event.data);
                    !(strips && usage_chunk)
                })
            }
            Reading::Json { kept, tail_only } => {
                kept.extend_from_slice(&data);
                if !*tail_only && kept.len() > MAX_JSON {
                    *tail_only = true;
                }
                if *tail_only && kept.len() > 2 * JSON_TAIL {
                    kept.drain(..kept.len() - JSON_TAIL);
                }
                data
            }
        }
    }

    /// Settles; returns bytes still held (an event without its blank line).
    fn finish(mut self) -> Bytes {
        let rest = match &mut self.reading {
            Reading::Events(reader) => reader.finish(),
            Reading::Json { kept, tail_only } => {
                if *tail_only {
                    self.usage.body_tail(kept);
                } else {
                    self.usage.body(kept);
                }
                Bytes::new()
            }
        };
        let success = (200..300).contains(&self.settlement.status);
        let (usage, estimated) = match self.usage.usage {
            Some(usage) if self.usage.complete => (usage, false),
            // Cut short (or never reported): what was seen, else an estimate from the bytes.
            partial if success || self.usage.text_bytes > 0 => {
                let seen = partial.unwrap_or_default();
                let usage = Usage {
                    input: if seen.input > 0 {
                        seen.input
                    } else {
                        self.settlement.input_estimate
                    },
                    output: seen.output.max(self.usage.text_bytes.div_ceil(4)),
                    ..seen
                };
                (usage, true)
            }
            // A refusal from the provider with no usage: nothing was used.
            partial => (partial.unwrap_or_default(), false),
        };
        let model = self.usage.model.take();
        self.meter.settle(
            self.reservation,
            self.settlement,
            model,
            usage,
            estimated,
            crate::auth::unix_now(),
        );
        rest
    }
}

impl<B> Body for MeteredBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        loop {
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let frame = match frame.into_data() {
                        Ok(data) => {
                            let passed = match &mut this.tracking {
                                Some(tracking) => tracking.observe(data),
                                None => data,
                            };
                            if passed.is_empty() {
                                // All held or dropped: nothing to send yet.
                                continue;
                            }
                            Frame::data(passed)
                        }
                        Err(frame) => frame,
                    };
                    return Poll::Ready(Some(Ok(frame)));
                }
                Some(Err(error)) => {
                    if let Some(tracking) = this.tracking.take() {
                        tracking.finish();
                    }
                    this.ended = true;
                    return Poll::Ready(Some(Err(error)));
                }
                None => {
                    this.ended = true;
                    let rest = this
                        .tracking
                        .take()
                        .map(Tracking::finish)
                        .unwrap_or_default();
                    if rest.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        if self.strips() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        // The client went away before the end: what was seen still counts.
        if let Some(tracking) = self.tracking.take() {
            tracking.finish();
        }
    }
}
