//! Flink's "capped fractionated" components (`RangeFraction`): a size that is a fraction of a
//! base, clamped to `[min, max]` (network memory, JVM overhead, managed memory).

use crate::config::options::ConfigOption;
use crate::config::{Configuration, MemorySize};

use super::{read_fraction, MemoryError};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RangeFraction {
    pub min: MemorySize,
    pub max: MemorySize,
    /// The configured float, widened to double as Flink does (0.1 → 0.10000000149011612).
    pub fraction: f64,
}

impl RangeFraction {
    /// `ProcessMemoryUtils.getRangeFraction`: fails when min > max or the fraction is not in
    /// `[0, 1)`, with Flink's "Inconsistently configured" text.
    pub fn from_config(
        config: &Configuration,
        min: MemorySize,
        max: MemorySize,
        fraction_option: &ConfigOption<f32>,
    ) -> Result<Self, MemoryError> {
        let fraction = f64::from(read_fraction(config, fraction_option)?);
        if min > max || !(0.0..1.0).contains(&fraction) {
            return Err(MemoryError::new(format!(
                "Inconsistently configured {fraction_option} ({fraction}) and its min ({}), max ({}) value",
                min.human(),
                max.human()
            )));
        }
        Ok(RangeFraction { min, max, fraction })
    }

    /// `deriveWithFraction`: `clamp(base × fraction)`.
    pub fn derive(&self, description: &str, base: MemorySize) -> MemorySize {
        self.cap(description, base.multiply(self.fraction))
    }

    /// `deriveWithInverseFraction`: `clamp(base × f / (1 − f))`, for when `base` is the rest of a
    /// total the component must be the fraction `f` of.
    pub fn derive_inverse(&self, description: &str, base: MemorySize) -> MemorySize {
        self.cap(description, base.multiply(self.fraction / (1.0 - self.fraction)))
    }

    fn cap(&self, description: &str, relative: MemorySize) -> MemorySize {
        if relative > self.max {
            tracing::info!(
                "The derived from fraction {description} ({}) is greater than its max value {}, max value will be used instead",
                relative.human(),
                self.max.human()
            );
            self.max
        } else if relative < self.min {
            tracing::info!(
                "The derived from fraction {description} ({}) is less than its min value {}, min value will be used instead",
                relative.human(),
                self.min.human()
            );
            self.min
        } else {
            relative
        }
    }

    pub fn contains(&self, size: MemorySize) -> bool {
        size >= self.min && size <= self.max
    }
}
