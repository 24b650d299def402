//! The admin listener's usage answers: `GET /usage?consumer=&from=&to=` (JSON totals by day and
//! model), `GET /usage.csv` (the same rows for finance) and `GET /usage/records` (every record).
//! Dates are `YYYY-MM-DD` in UTC, both ends included; without them, the last 31 days.

use serde_json::{json, Value};

use super::Meter;
use crate::calendar::{civil_from_days, days_from_civil};
use crate::state::usage::{DayTotals, Totals};

/// What a usage query asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct Query {
    /// One consumer, or all.
    pub consumer: Option<String>,
    /// First day (days since the epoch).
    pub from: i64,
    /// Last day.
    pub to: i64,
}

/// Reads `consumer`, `from` and `to` from a query string; the error says which is wrong.
pub fn parse_query(query: Option<&str>, today: i64) -> Result<Query, String> {
    let mut consumer = None;
    let mut from = None;
    let mut to = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "consumer" => consumer = Some(value.into_owned()),
            "from" => {
                from = Some(
                    parse_date(&value)
                        .ok_or(format!("`from={value}` is not a date: use YYYY-MM-DD"))?,
                )
            }
            "to" => {
                to = Some(
                    parse_date(&value)
                        .ok_or(format!("`to={value}` is not a date: use YYYY-MM-DD"))?,
                )
            }
            other => {
                return Err(format!(
                    "unknown parameter `{other}`: use consumer, from, to"
                ))
            }
        }
    }
    let to = to.unwrap_or(today);
    let from = from.unwrap_or(to - 30);
    if from > to {
        return Err("`from` is after `to`".into());
    }
    if to - from > 3660 {
        return Err("at most ten years at once".into());
    }
    Ok(Query { consumer, from, to })
}

fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: i64 = parts.next()?.parse().ok()?;
    let day: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(1970..=9999).contains(&year) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // 2026-02-31 would wrap into March: refused rather than guessed.
    (civil_from_days(days) == (year, month, day)).then_some(days)
}

/// `YYYY-MM-DD` of a day since the epoch.
pub fn date(day: i64) -> String {
    let (year, month, day) = civil_from_days(day);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Micro-USD as a decimal USD string, exactly (`1234567` → `"1.234567"`).
pub fn usd(micro: u64) -> String {
    format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000)
}

fn totals_json(totals: &Totals) -> Value {
    json!({
        "requests": totals.requests,
        "input_tokens": totals.input_tokens,
        "output_tokens": totals.output_tokens,
        "cached_tokens": totals.cached_tokens,
        "cost_usd": usd(totals.cost_micro_usd),
        "cost_micro_usd": totals.cost_micro_usd,
        "estimated": totals.estimated,
    })
}

fn sum(rows: &[DayTotals]) -> Totals {
    let mut total = Totals::default();
    for row in rows {
        let t = &row.totals;
        total.requests += t.requests;
        total.input_tokens += t.input_tokens;
        total.output_tokens += t.output_tokens;
        total.cached_tokens += t.cached_tokens;
        total.cost_micro_usd += t.cost_micro_usd;
        total.estimated += t.estimated;
    }
    total
}

/// `GET /usage`: totals by day, consumer and model, and their sum.
pub fn usage_json(meter: &Meter, query: &Query) -> Result<Value, String> {
    let rows = meter.totals(query.consumer.as_deref(), query.from, query.to)?;
    let days: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut value = totals_json(&row.totals);
            value["date"] = json!(date(row.day));
            value["consumer"] = json!(row.consumer);
            value["model"] = json!(row.model);
            value
        })
        .collect();
    Ok(json!({
        "consumer": query.consumer,
        "from": date(query.from),
        "to": date(query.to),
        "days": days,
        "total": totals_json(&sum(&rows)),
    }))
}

/// `GET /usage/records`: every record of the range.
pub fn records_json(meter: &Meter, query: &Query) -> Result<Value, String> {
    let records = meter.records(query.consumer.as_deref(), query.from, query.to)?;
    Ok(json!({ "records": records }))
}

/// `GET /usage.csv`: one line per day, consumer and model (RFC 4180).
pub fn usage_csv(meter: &Meter, query: &Query) -> Result<String, String> {
    let rows = meter.totals(query.consumer.as_deref(), query.from, query.to)?;
    let mut out = String::from(
        "date,consumer,model,requests,input_tokens,output_tokens,cached_tokens,cost_usd,estimated\r\n",
    );
    for row in rows {
        let t = &row.totals;
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}\r\n",
            date(row.day),
            csv_field(&row.consumer),
            csv_field(&row.model),
            t.requests,
            t.input_tokens,
            t.output_tokens,
            t.cached_tokens,
            usd(t.cost_micro_usd),
            t.estimated
        ));
    }
    Ok(out)
}

/// A field quoted when it needs to be; one a spreadsheet would run as a formula is prefixed
/// with `'` (OWASP's advice on CSV injection).
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_dates_and_amounts() {
        let today = days_from_civil(2026, 12, 2);
        let query = parse_query(
            Some("consumer=api_key%3Aa&from=2026-12-01&to=2026-12-31"),
            today,
        );
        assert_eq!(
            query,
            Ok(Query {
                consumer: Some("api_key:a".into()),
                from: days_from_civil(2026, 12, 1),
                to: days_from_civil(2026, 12, 31),
            })
        );
        assert_eq!(parse_query(None, today).map(|q| q.to - q.from), Ok(30));
        assert!(parse_query(Some("from=2026-02-31"), today).is_err());
        assert!(parse_query(Some("from=2026-12-05&to=2026-12-01"), today).is_err());
        assert!(parse_query(Some("user=x"), today).is_err());
        assert_eq!(date(today), "2026-12-02");
        assert_eq!(usd(1_234_567), "1.234567");
        assert_eq!(usd(5), "0.000005");
        assert_eq!(csv_field("jwt:idp:a,b"), "\"jwt:idp:a,b\"");
        assert_eq!(csv_field("=cmd"), "'=cmd");
    }
}
