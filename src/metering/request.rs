//! What a metered request says about itself (model, streaming, its output cap) and, for an
//! OpenAI-style stream whose client did not ask for usage, the one change made to it:
//! `stream_options.include_usage = true`, so the provider reports usage at the end of the
//! stream (the extra chunk is removed again on the way back).

use bytes::Bytes;
use serde_json::Value;

use crate::config::UsageFormat;

/// What metering reads from a request body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// `model`.
    pub model: Option<String>,
    /// `"stream": true`.
    pub stream: bool,
    /// `max_tokens`, `max_completion_tokens` or `max_output_tokens`.
    pub max_output: Option<u64>,
    /// Input tokens, estimated from the body's size (4 bytes a token, rounded up).
    pub input_estimate: u64,
    /// The gateway asked for the usage chunk: the client must not receive it.
    pub strip_usage_chunk: bool,
}

/// Reads `body` and returns the facts and the body to forward (changed only to ask for usage).
pub fn inspect(format: UsageFormat, body: Bytes) -> (RequestFacts, Bytes) {
    let mut facts = RequestFacts {
        input_estimate: (body.len() as u64).div_ceil(4),
        ..RequestFacts::default()
    };
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(&body) else {
        return (facts, body);
    };
    facts.model = object
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_string);
    facts.stream = object.get("stream").and_then(Value::as_bool) == Some(true);
    facts.max_output = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
        .iter()
        .find_map(|key| object.get(*key).and_then(Value::as_u64));
    // Chat completions and completions take `stream_options`; the Responses API (`input`)
    // reports usage in `response.completed` anyway, and Anthropic always does.
    let takes_stream_options = object.contains_key("messages") || object.contains_key("prompt");
    if format == UsageFormat::OpenAi && facts.stream && takes_stream_options {
        let asked = object
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            == Some(true);
        if !asked {
            let options = object
                .entry("stream_options")
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if let Value::Object(options) = options {
                options.insert("include_usage".into(), Value::Bool(true));
                facts.strip_usage_chunk = true;
                if let Ok(rewritten) = serde_json::to_vec(&object) {
                    return (facts, Bytes::from(rewritten));
                }
            }
        }
    }
    (facts, body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_stream_that_did_not_ask_for_usage_is_made_to() {
        let body =
            Bytes::from_static(br#"{"model":"m","stream":true,"messages":[],"max_tokens":7}"#);
        let (facts, forwarded) = inspect(UsageFormat::OpenAi, body.clone());
        assert!(facts.strip_usage_chunk);
        assert_eq!(facts.max_output, Some(7));
        assert_eq!(facts.model.as_deref(), Some("m"));
        let value: Value = serde_json::from_slice(&forwarded).unwrap();
        assert_eq!(value["stream_options"]["include_usage"], true);

        let asked = Bytes::from_static(
            br#"{"stream":true,"messages":[],"stream_options":{"include_usage":true}}"#,
        );
        let (facts, forwarded) = inspect(UsageFormat::OpenAi, asked.clone());
        assert!(!facts.strip_usage_chunk);
        assert_eq!(forwarded, asked);

        for untouched in [
            &br#"{"stream":true,"input":"hi"}"#[..],
            br#"{"stream":false,"messages":[]}"#,
            b"not json",
        ] {
            let body = Bytes::copy_from_slice(untouched);
            assert_eq!(inspect(UsageFormat::OpenAi, body.clone()).1, body);
        }
        let (facts, _) = inspect(UsageFormat::Anthropic, body);
        assert!(!facts.strip_usage_chunk);
    }
}
