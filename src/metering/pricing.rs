//! What usage costs: the model's prices (micro-USD per million tokens) times the tokens of each
//! kind, in integers, rounded up to a whole micro-USD so a budget is never under-charged.

use crate::config::{ModelPrice, PricingSettings};

use super::Usage;

/// The price of `response_model`, else of `request_model` (a provider often answers with a
/// dated name for the alias the client asked for).
pub fn price<'p>(
    pricing: &'p PricingSettings,
    request_model: Option<&str>,
    response_model: Option<&str>,
) -> Option<&'p ModelPrice> {
    response_model
        .and_then(|m| pricing.models.get(m))
        .or_else(|| request_model.and_then(|m| pricing.models.get(m)))
}

/// The cost of `usage` in micro-USD; 0 for a model without a price.
pub fn cost(
    pricing: &PricingSettings,
    request_model: Option<&str>,
    response_model: Option<&str>,
    usage: Usage,
) -> u64 {
    let Some(price) = price(pricing, request_model, response_model) else {
        return 0;
    };
    let uncached = usage
        .input
        .saturating_sub(usage.cached)
        .saturating_sub(usage.cache_creation);
    let per_million = u128::from(uncached) * u128::from(price.input)
        + u128::from(usage.cached) * u128::from(price.cached_input)
        + u128::from(usage.cache_creation) * u128::from(price.cache_creation)
        + u128::from(usage.output) * u128::from(price.output);
    u64::try_from(per_million.div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_integers_rounded_up() {
        let mut pricing = PricingSettings::default();
        pricing.models.insert(
            "m".into(),
            ModelPrice {
                input: 150_000,
                output: 600_000,
                cached_input: 75_000,
                cache_creation: 187_500,
            },
        );
        let usage = |input, output, cached, cache_creation| Usage {
            input,
            output,
            cached,
            cache_creation,
        };
        // 1M input at $0.15/M + 1M output at $0.60/M.
        assert_eq!(
            cost(&pricing, Some("m"), None, usage(1_000_000, 1_000_000, 0, 0)),
            750_000
        );
        // One token costs 0.15 micro-USD: charged as 1.
        assert_eq!(cost(&pricing, Some("m"), None, usage(1, 0, 0, 0)), 1);
        // 10 input of which 4 cached and 2 written: 4×0.15 + 4×0.075 + 2×0.1875 = 1.275 → 2.
        assert_eq!(cost(&pricing, Some("m"), None, usage(10, 0, 4, 2)), 2);
        assert_eq!(
            cost(&pricing, Some("x"), Some("m-2024"), usage(10, 0, 0, 0)),
            0
        );
        assert_eq!(
            cost(&pricing, Some("x"), Some("m"), usage(1_000_000, 0, 0, 0)),
            150_000
        );
    }
}
