//! Metering's cost per SSE event as a stream goes by: the line reader alone (pass-through and
//! dropping mode) and with the usage reader parsing every event, over OpenAI chat chunks and
//! Anthropic deltas as providers send them, each event split across three reads.
#![allow(missing_docs, clippy::unwrap_used)]

use authgate::config::UsageFormat;
use authgate::metering::sse::SseReader;
use authgate::metering::usage::UsageReader;
use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

const EVENTS: usize = 1000;

fn pieces(event: &str) -> Vec<Bytes> {
    let mut out = Vec::new();
    for i in 0..EVENTS {
        let text = event.replace("{i}", &i.to_string());
        let third = text.len() / 3;
        out.push(Bytes::copy_from_slice(&text.as_bytes()[..third]));
        out.push(Bytes::copy_from_slice(&text.as_bytes()[third..2 * third]));
        out.push(Bytes::copy_from_slice(&text.as_bytes()[2 * third..]));
    }
    out
}

fn run(pieces: &[Bytes], mut reader: SseReader, usage: Option<UsageFormat>) -> u64 {
    let mut usage = usage.map(UsageReader::new);
    let mut passed = 0;
    for piece in pieces {
        let out = reader.feed(piece.clone(), &mut |event| {
            if let Some(usage) = usage.as_mut() {
                return !usage.event(event.data);
            }
            true
        });
        passed += out.len() as u64;
    }
    passed + usage.map_or(0, |u| u.text_bytes)
}

fn bench(c: &mut Criterion) {
    let openai = pieces("data: {\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1733097600,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" token{i}\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n");
    let anthropic = pieces("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" token{i}\"}}\n\n");
    let mut group = c.benchmark_group("sse_per_1000_events");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("lines_only", |b| {
        b.iter(|| run(black_box(&openai), SseReader::default(), None))
    });
    group.bench_function("lines_dropping_mode", |b| {
        b.iter(|| run(black_box(&openai), SseReader::dropping(), None))
    });
    group.bench_function("openai_usage", |b| {
        b.iter(|| {
            run(
                black_box(&openai),
                SseReader::dropping(),
                Some(UsageFormat::OpenAi),
            )
        })
    });
    group.bench_function("anthropic_usage", |b| {
        b.iter(|| {
            run(
                black_box(&anthropic),
                SseReader::default(),
                Some(UsageFormat::Anthropic),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
