//! The proxy's side of metering, for routes with `usage`: the request body is read (bounded by
//! `max_body`) to learn the model and the output cap, the worst case is reserved against the
//! consumer's plan before anything is forwarded, and the response body is wrapped so its usage
//! is settled as it streams. Requests without a JSON body (`GET /v1/models`) are not metered.
//! A metered request asks for an uncompressed answer (`Accept-Encoding: identity`).

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::pool::PooledBody;

use crate::config::UsageFormat;
use crate::error::GatewayError;
use crate::metering::body::MeteredBody;
use crate::metering::request::RequestFacts;
use crate::metering::usage::UsageReader;
use crate::metering::{Meter, Reservation, Settlement};
use crate::Body;

/// A metered request in flight: what settles its usage when the response ends. Dropped
/// without a response (the upstream failed), it gives its reservation back.
#[derive(Debug)]
pub struct Metering {
    meter: Meter,
    format: UsageFormat,
    facts: RequestFacts,
    reservation: Option<Reservation>,
    settlement: Settlement,
}

impl Drop for Metering {
    fn drop(&mut self) {
        if let Some(reservation) = self.reservation.take() {
            self.meter.release(reservation);
        }
    }
}

/// Who the request counts against.
pub struct Account<'a> {
    /// The consumer's canonical id.
    pub consumer: String,
    /// Its plan's name, if it has one.
    pub plan: Option<&'a str>,
    /// The route's id.
    pub route: metrics::SharedString,
    /// The request id.
    pub request_id: &'a str,
}

/// Reads the body of `request` and reserves its worst case. Returns the request to forward
/// (its body now in memory, changed only to ask for usage) and what settles it; or the
/// request untouched (and no metering) when it carries no JSON body.
pub async fn prepare(
    meter: &Meter,
    format: UsageFormat,
    account: Account<'_>,
    request: Request<Incoming>,
    max_body: u64,
) -> Result<(Request<Body>, Option<Metering>), GatewayError> {
    let json = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
    let (mut parts, body) = request.into_parts();
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    if !json {
        let body = Limited::new(body.map_err(crate::error::ClientBodyError), limit).boxed();
        return Ok((Request::from_parts(parts, body), None));
    }
    let bytes: Bytes = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                GatewayError::BodyTooLarge
            } else {
                GatewayError::BadRequest("the request body is malformed or was cut off")
            }
        })?
        .to_bytes();
    let (facts, bytes) = crate::metering::request::inspect(format, bytes);
    let output = facts.max_output.unwrap_or(meter.max_output_tokens());
    let reservation = meter
        .reserve_for(
            &account.consumer,
            account.plan,
            facts.model.as_deref(),
            facts.input_estimate,
            output,
            crate::auth::unix_now(),
        )
        .await
        .map_err(|denial| match denial {
            crate::limits::Denial::Limited(refusal) => GatewayError::Limited(refusal),
            crate::limits::Denial::Unavailable => GatewayError::LimitsUnavailable,
        })?;
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    // Usage is read from the bytes as they pass: a compressed answer would hide it.
    parts
        .headers
        .insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    let settlement = Settlement {
        consumer: account.consumer,
        route: account.route,
        request_id: account.request_id.to_string(),
        model: facts.model.clone(),
        input_estimate: facts.input_estimate,
        status: 0,
    };
    let metering = Metering {
        meter: meter.clone(),
        format,
        facts,
        reservation: Some(reservation),
        settlement,
    };
    Ok((
        Request::from_parts(parts, crate::full_body(bytes)),
        Some(metering),
    ))
}

/// Wraps the upstream's response body so its usage settles `metering` as it streams.
pub fn wrap(response: Response<PooledBody>, mut metering: Metering) -> Response<Body> {
    let event_stream = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        });
    let (mut parts, body) = response.into_parts();
    let mut settlement = metering.settlement.clone();
    settlement.status = parts.status.as_u16();
    let body = MeteredBody::new(
        body,
        metering.meter.clone(),
        metering.reservation.take().unwrap_or_default(),
        settlement,
        UsageReader::new(metering.format),
        event_stream,
        metering.facts.strip_usage_chunk,
    );
    if body.strips() {
        // One event comes out: the length the provider declared no longer holds.
        parts.headers.remove(CONTENT_LENGTH);
    }
    Response::from_parts(parts, body.map_err(Into::into).boxed())
}
