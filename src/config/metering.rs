//! What metering reads from gateway.toml: a route's `usage` format, `[pricing]` (a LiteLLM
//! prices file and inline models) and the `tokens` / `budget` amounts of plans, validated into
//! integers: prices in micro-USD per million tokens, budgets in micro-USD. Floats exist only
//! while reading the file.

use std::collections::BTreeMap;

use super::plans::{parse_quota, Quota};
use super::raw::{RawModelPrice, RawPricing, Text};
use super::Validator;

/// Which provider's wire format a metered route's usage is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageFormat {
    /// OpenAI and compatible servers (chat completions, completions, embeddings, responses).
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
}

impl UsageFormat {
    /// The name written in gateway.toml.
    pub fn name(self) -> &'static str {
        match self {
            UsageFormat::OpenAi => "openai",
            UsageFormat::Anthropic => "anthropic",
        }
    }
}

/// One model's prices, micro-USD per million tokens (= USD per token × 10¹²).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelPrice {
    /// Input tokens not read from a cache.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the provider's cache (default: the input price).
    pub cached_input: u64,
    /// Input tokens written to the provider's cache (default: the input price).
    pub cache_creation: u64,
}

/// `[pricing]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricingSettings {
    /// Prices by model name: the file's, then the inline ones over them.
    pub models: BTreeMap<String, ModelPrice>,
    /// The output reserved for a request that names no `max_tokens`.
    pub max_output_tokens: u64,
}

impl Default for PricingSettings {
    fn default() -> Self {
        PricingSettings {
            models: BTreeMap::new(),
            max_output_tokens: DEFAULT_MAX_OUTPUT_TOKENS,
        }
    }
}

/// Reserved output when a request sets no `max_tokens` and `[pricing] max_output_tokens` is unset.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 4096;

/// `"2000000/day"`: tokens per calendar window.
pub fn parse_tokens(text: &str) -> Result<Quota, String> {
    parse_quota(text).map_err(|message| message.replacen("quota", "tokens", 1))
}

/// `"50/month"`, `"12.50/day"`: USD per calendar window, as micro-USD.
pub fn parse_budget(text: &str) -> Result<Quota, String> {
    let shape =
        || format!("budget `{text}` is not USD per window, e.g. \"50/month\" or \"2.50/day\"");
    let (amount, window) = text.trim().split_once('/').ok_or_else(shape)?;
    let micro = parse_usd(amount.trim()).ok_or_else(shape)?;
    if micro == 0 {
        return Err(format!("budget `{text}` allows nothing"));
    }
    let window = parse_quota(&format!("1/{window}"))
        .map_err(|_| format!("budget `{text}`: use /day or /month"))?
        .window;
    Ok(Quota {
        count: micro,
        window,
    })
}

/// A decimal USD amount (at most six decimals) in micro-USD, without going through a float.
fn parse_usd(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.len() > 6 {
        return None;
    }
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let padded = format!("{fraction:0<6}");
    let fraction: u64 = padded.parse().ok()?;
    whole.checked_mul(1_000_000)?.checked_add(fraction)
}

/// USD per token (LiteLLM) or per million tokens (inline) → micro-USD per million tokens.
fn per_million_micro(usd: f64, tokens_per_unit: f64) -> Option<u64> {
    let value = (usd * 1e12 / tokens_per_unit).round();
    (0.0..1e18).contains(&value).then_some(value as u64)
}

/// One entry of LiteLLM's `model_prices_and_context_window.json`; other fields are ignored.
#[derive(serde::Deserialize)]
struct LiteLlmEntry {
    input_cost_per_token: Option<f64>,
    output_cost_per_token: Option<f64>,
    cache_read_input_token_cost: Option<f64>,
    cache_creation_input_token_cost: Option<f64>,
}

impl Validator<'_> {
    pub(super) fn usage_format(&mut self, text: &Text) -> Option<UsageFormat> {
        match self.text(text)?.as_str() {
            "openai" => Some(UsageFormat::OpenAi),
            "anthropic" => Some(UsageFormat::Anthropic),
            other => {
                self.error(
                    text.span(),
                    format!(
                        "usage `{other}` is not a known format: use \"openai\" or \"anthropic\""
                    ),
                );
                None
            }
        }
    }

    pub(super) fn pricing(&mut self, raw: Option<&RawPricing>) -> PricingSettings {
        let mut settings = PricingSettings::default();
        let Some(pricing) = raw else { return settings };
        if let Some(text) = &pricing.file {
            if let Some(path) = self.path(text) {
                match std::fs::read(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))
                    .and_then(|bytes| {
                        litellm_prices(&bytes).map_err(|e| format!("{}: {e}", path.display()))
                    }) {
                    Ok(models) => settings.models = models,
                    Err(message) => self.error(text.span(), message),
                }
            }
        }
        for (name, spanned) in &pricing.models {
            if let Some(price) = self.model_price(name, spanned) {
                settings.models.insert(name.clone(), price);
            }
        }
        if let Some(max) = &pricing.max_output_tokens {
            match u64::try_from(*max.get_ref()) {
                Ok(value) if value > 0 => settings.max_output_tokens = value,
                _ => self.error(max.span(), "`max_output_tokens` must be at least 1"),
            }
        }
        settings
    }

    fn model_price(
        &mut self,
        name: &str,
        spanned: &toml::Spanned<RawModelPrice>,
    ) -> Option<ModelPrice> {
        let raw = spanned.get_ref();
        let mut read = |value: &Option<toml::Spanned<f64>>| -> Option<Option<u64>> {
            let Some(value) = value else {
                return Some(None);
            };
            match per_million_micro(*value.get_ref(), 1e6) {
                Some(micro) => Some(Some(micro)),
                None => {
                    self.error(value.span(), "a price is a USD amount of zero or more");
                    None
                }
            }
        };
        let input = read(&raw.input_per_million)?;
        let output = read(&raw.output_per_million)?;
        let cached = read(&raw.cached_input_per_million)?;
        let creation = read(&raw.cache_creation_per_million)?;
        let (Some(input), Some(output)) = (input, output) else {
            self.error(
                spanned.span(),
                format!("model `{name}` needs `input_per_million` and `output_per_million`"),
            );
            return None;
        };
        Some(ModelPrice {
            input,
            output,
            cached_input: cached.unwrap_or(input),
            cache_creation: creation.unwrap_or(input),
        })
    }
}

/// The priced models of a LiteLLM prices file (entries without token prices are skipped).
fn litellm_prices(bytes: &[u8]) -> Result<BTreeMap<String, ModelPrice>, String> {
    let entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|e| format!("not a LiteLLM prices file: {e}"))?;
    let mut models = BTreeMap::new();
    for (name, value) in entries {
        let Ok(entry) = serde_json::from_value::<LiteLlmEntry>(value) else {
            continue;
        };
        let (Some(input), Some(output)) = (entry.input_cost_per_token, entry.output_cost_per_token)
        else {
            continue;
        };
        let per_token = |usd: f64| per_million_micro(usd, 1.0);
        let (Some(input), Some(output)) = (per_token(input), per_token(output)) else {
            return Err(format!("model `{name}` has a negative or huge price"));
        };
        let cached = entry.cache_read_input_token_cost.and_then(per_token);
        let creation = entry.cache_creation_input_token_cost.and_then(per_token);
        models.insert(
            name,
            ModelPrice {
                input,
                output,
                cached_input: cached.unwrap_or(input),
                cache_creation: creation.unwrap_or(input),
            },
        );
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn budgets_are_exact_micro_usd() {
        assert_eq!(parse_budget("50/month").unwrap().count, 50_000_000);
        assert_eq!(parse_budget("2.5/day").unwrap().count, 2_500_000);
        assert_eq!(parse_budget("0.000001/day").unwrap().count, 1);
        assert!(parse_budget("0.0000001/day").is_err());
        assert!(parse_budget("-1/day").is_err());
        assert!(parse_budget("1/week").is_err());
        assert!(parse_budget("0/day").is_err());
    }

    #[test]
    fn litellm_prices_become_micro_usd_per_million() {
        let file = br#"{"sample_spec": {"max_tokens": "set to max"},
            "gpt-4o-mini": {"input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7,
                            "cache_read_input_token_cost": 7.5e-8, "litellm_provider": "openai"},
            "embed": {"input_cost_per_token": 2e-8, "output_cost_per_token": 0.0}}"#;
        let models = litellm_prices(file).unwrap();
        assert_eq!(
            models["gpt-4o-mini"],
            ModelPrice {
                input: 150_000,
                output: 600_000,
                cached_input: 75_000,
                cache_creation: 150_000
            }
        );
        assert_eq!(models["embed"].input, 20_000);
        assert!(!models.contains_key("sample_spec"));
    }
}
