//! Token usage as providers report it, read from JSON bodies and from SSE events.
//!
//! - OpenAI-compatible: `usage.prompt_tokens` / `completion_tokens` /
//!   `prompt_tokens_details.cached_tokens` (chat completions, completions, embeddings; the last
//!   chunk of a stream asked with `stream_options.include_usage`), and the Responses API's
//!   `usage.input_tokens` / `output_tokens` / `input_tokens_details.cached_tokens`, in the
//!   body or in the `response` of `response.completed`.
//! - Anthropic Messages: `message_start.message.usage` (input, cache read, cache creation) and
//!   `message_delta.usage.output_tokens`, which is cumulative: the last value counts.
//!
//! Figures are normalised so that `input` is every input token (cached ones included) and
//! `cached` / `cache_creation` say how many of them came from / went to the provider's cache.

use serde::Deserialize;

use crate::config::UsageFormat;

/// What one response used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// All input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the cache.
    pub cached: u64,
    /// Input tokens written to the cache.
    pub cache_creation: u64,
}

#[derive(Deserialize, Default)]
struct RawUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<Details>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    input_tokens_details: Option<Details>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct Details {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Delta {
    Text(String),
    Block {
        text: Option<String>,
        partial_json: Option<String>,
        thinking: Option<String>,
    },
}

#[derive(Deserialize, Default)]
struct Choice {
    delta: Option<ChoiceDelta>,
    message: Option<ChoiceDelta>,
    text: Option<String>,
}

#[derive(Deserialize, Default)]
struct ChoiceDelta {
    content: Option<String>,
    reasoning_content: Option<String>,
}

#[derive(Deserialize, Default)]
struct Inner {
    model: Option<String>,
    usage: Option<RawUsage>,
}

/// The fields of a body or event that usage is read from; everything else is skipped unread.
#[derive(Deserialize, Default)]
struct Message {
    #[serde(rename = "type")]
    kind: Option<String>,
    model: Option<String>,
    usage: Option<RawUsage>,
    choices: Option<Vec<Choice>>,
    delta: Option<Delta>,
    message: Option<Inner>,
    response: Option<Inner>,
}

/// Reads a response's usage, event by event or from its whole body.
#[derive(Debug, Clone)]
pub struct UsageReader {
    format: UsageFormat,
    /// The usage reported so far.
    pub usage: Option<Usage>,
    /// The provider's final word on usage has been read.
    pub complete: bool,
    /// The model the response names.
    pub model: Option<String>,
    /// Bytes of generated text seen, for an estimate when no usage comes.
    pub text_bytes: u64,
}

impl UsageReader {
    /// A reader for `format`.
    pub fn new(format: UsageFormat) -> Self {
        UsageReader {
            format,
            usage: None,
            complete: false,
            model: None,
            text_bytes: 0,
        }
    }

    /// Reads one SSE event's data. Returns whether it is the separate usage chunk of an
    /// OpenAI stream (`choices: []` with a `usage`), the one a client that did not ask for it
    /// must not see.
    pub fn event(&mut self, data: &[u8]) -> bool {
        if data == b"[DONE]" {
            return false;
        }
        let Ok(message) = serde_json::from_slice::<Message>(data) else {
            return false;
        };
        self.read(message, true)
    }

    /// Reads a whole JSON response body.
    pub fn body(&mut self, bytes: &[u8]) {
        if let Ok(message) = serde_json::from_slice::<Message>(bytes) {
            self.read(message, false);
        }
    }

    /// Reads the `usage` object that follows the last `"usage":` in `tail` (the end of a body
    /// too large to keep whole: usage comes last in every format read here).
    pub fn body_tail(&mut self, tail: &[u8]) {
        let needle = b"\"usage\"";
        let Some(at) = tail.windows(needle.len()).rposition(|w| w == needle) else {
            return;
        };
        let rest = &tail[at + needle.len()..];
        let Some(colon) = rest.iter().position(|b| *b == b':') else {
            return;
        };
        let mut values =
            serde_json::Deserializer::from_slice(&rest[colon + 1..]).into_iter::<RawUsage>();
        if let Some(Ok(raw)) = values.next() {
            self.usage = Some(self.normalise(raw));
            self.complete = true;
        }
    }

    fn read(&mut self, message: Message, streaming: bool) -> bool {
        if let Some(model) = message
            .model
            .as_ref()
            .or(message.message.as_ref().and_then(|m| m.model.as_ref()))
        {
            if self.model.is_none() {
                self.model = Some(model.clone());
            }
        }
        for choice in message.choices.iter().flatten() {
            let delta = choice.delta.as_ref().or(choice.message.as_ref());
            for text in [
                delta.and_then(|d| d.content.as_ref()),
                delta.and_then(|d| d.reasoning_content.as_ref()),
                choice.text.as_ref(),
            ]
            .into_iter()
            .flatten()
            {
                self.text_bytes += text.len() as u64;
            }
        }
        match &message.delta {
            Some(Delta::Text(text)) => self.text_bytes += text.len() as u64,
            Some(Delta::Block {
                text,
                partial_json,
                thinking,
            }) => {
                for text in [text, partial_json, thinking].into_iter().flatten() {
                    self.text_bytes += text.len() as u64;
                }
            }
            None => {}
        }
        match self.format {
            UsageFormat::OpenAi => self.read_openai(message, streaming),
            UsageFormat::Anthropic => {
                self.read_anthropic(message, streaming);
                false
            }
        }
    }

    fn read_openai(&mut self, message: Message, streaming: bool) -> bool {
        let usage_chunk = message.choices.as_ref().is_some_and(Vec::is_empty);
        if let Some(response) = message.response {
            // Responses API events: `response.completed` (or `.incomplete`, `.failed`) carries
            // the final usage; earlier ones carry `usage: null`.
            if self.model.is_none() {
                self.model = response.model;
            }
            if let Some(raw) = response.usage {
                self.usage = Some(self.normalise(raw));
                self.complete = true;
            }
            return false;
        }
        match message.usage {
            Some(raw) => {
                self.usage = Some(self.normalise(raw));
                self.complete = true;
                streaming && usage_chunk
            }
            None => false,
        }
    }

    fn read_anthropic(&mut self, message: Message, streaming: bool) {
        if !streaming {
            if let Some(raw) = message.usage {
                self.usage = Some(self.normalise(raw));
                self.complete = true;
            }
            return;
        }
        match message.kind.as_deref() {
            Some("message_start") => {
                if let Some(raw) = message.message.and_then(|m| m.usage) {
                    self.usage = Some(self.normalise(raw));
                }
            }
            Some("message_delta") => {
                if let Some(raw) = message.usage {
                    let mut usage = self.usage.unwrap_or_default();
                    // Cumulative: each delta replaces the count, never adds to it.
                    if let Some(output) = raw.output_tokens {
                        usage.output = output;
                    }
                    // Newer versions repeat the input figures here; they replace the start's.
                    if raw.input_tokens.is_some() || raw.cache_read_input_tokens.is_some() {
                        let output = usage.output;
                        usage = self.normalise(raw);
                        usage.output = output;
                    }
                    self.usage = Some(usage);
                }
            }
            Some("message_stop") => self.complete = self.usage.is_some(),
            _ => {}
        }
    }

    fn normalise(&self, raw: RawUsage) -> Usage {
        match self.format {
            UsageFormat::OpenAi => Usage {
                input: raw.prompt_tokens.or(raw.input_tokens).unwrap_or(0),
                output: raw.completion_tokens.or(raw.output_tokens).unwrap_or(0),
                cached: raw
                    .prompt_tokens_details
                    .or(raw.input_tokens_details)
                    .and_then(|d| d.cached_tokens)
                    .unwrap_or(0),
                cache_creation: 0,
            },
            UsageFormat::Anthropic => {
                let cached = raw.cache_read_input_tokens.unwrap_or(0);
                let creation = raw.cache_creation_input_tokens.unwrap_or(0);
                Usage {
                    input: raw.input_tokens.unwrap_or(0) + cached + creation,
                    output: raw.output_tokens.unwrap_or(0),
                    cached,
                    cache_creation: creation,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn openai_bodies_and_the_usage_chunk() {
        let mut reader = UsageReader::new(UsageFormat::OpenAi);
        reader.body(br#"{"model":"gpt-x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":9,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":2}}}"#);
        assert_eq!(
            reader.usage,
            Some(Usage {
                input: 9,
                output: 3,
                cached: 2,
                cache_creation: 0
            })
        );
        assert_eq!(reader.model.as_deref(), Some("gpt-x"));

        let mut stream = UsageReader::new(UsageFormat::OpenAi);
        assert!(!stream
            .event(br#"{"model":"m","choices":[{"delta":{"content":"abcd"}}],"usage":null}"#));
        assert!(stream.usage.is_none());
        assert!(
            stream.event(br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#)
        );
        assert!(!stream.event(b"[DONE]"));
        assert_eq!(stream.usage.unwrap().output, 1);
        assert_eq!(stream.text_bytes, 4);
        assert!(stream.complete);
    }

    #[test]
    fn the_responses_api_and_embeddings() {
        let mut reader = UsageReader::new(UsageFormat::OpenAi);
        assert!(
            !reader.event(br#"{"type":"response.created","response":{"model":"r","usage":null}}"#)
        );
        reader.event(br#"{"type":"response.output_text.delta","delta":"hello"}"#);
        reader.event(br#"{"type":"response.completed","response":{"usage":{"input_tokens":7,"output_tokens":2,"input_tokens_details":{"cached_tokens":1}}}}"#);
        assert_eq!(
            reader.usage,
            Some(Usage {
                input: 7,
                output: 2,
                cached: 1,
                cache_creation: 0
            })
        );
        assert_eq!(reader.text_bytes, 5);
        assert_eq!(reader.model.as_deref(), Some("r"));

        let mut tail = UsageReader::new(UsageFormat::OpenAi);
        tail.body_tail(
            br#"0.5, 0.25]}], "model": "e", "usage": {"prompt_tokens": 8, "total_tokens": 8}}"#,
        );
        assert_eq!(
            tail.usage,
            Some(Usage {
                input: 8,
                ..Usage::default()
            })
        );
    }

    #[test]
    fn anthropic_output_is_cumulative_and_input_counts_the_cache() {
        let mut reader = UsageReader::new(UsageFormat::Anthropic);
        reader.event(br#"{"type":"message_start","message":{"model":"claude","usage":{"input_tokens":10,"output_tokens":1,"cache_read_input_tokens":4,"cache_creation_input_tokens":3}}}"#);
        reader
            .event(br#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"abc"}}"#);
        reader.event(br#"{"type":"message_delta","usage":{"output_tokens":6}}"#);
        reader.event(br#"{"type":"message_delta","usage":{"output_tokens":12}}"#);
        assert!(!reader.complete);
        reader.event(br#"{"type":"message_stop"}"#);
        assert!(reader.complete);
        assert_eq!(
            reader.usage,
            Some(Usage {
                input: 17,
                output: 12,
                cached: 4,
                cache_creation: 3
            })
        );
        assert_eq!(reader.text_bytes, 3);

        let mut body = UsageReader::new(UsageFormat::Anthropic);
        body.body(
            br#"{"type":"message","model":"c","usage":{"input_tokens":2,"output_tokens":5}}"#,
        );
        assert_eq!(
            body.usage,
            Some(Usage {
                input: 2,
                output: 5,
                ..Usage::default()
            })
        );
    }
}
