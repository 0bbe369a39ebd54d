//! The vocabulary of measured quantities, their units and physical ranges.
//!
//! A quantity's name is what devices publish (`electricity_kwh`) and what the API and
//! the store use; its unit is fixed by the name, so a value never travels without
//! knowing what it measures. This module must never guess a unit: an unknown name is
//! an error for the caller to quarantine.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a series behaves over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeriesKind {
    /// A cumulative index (meter reading): consumption is the sum of positive steps;
    /// a negative step is a reset or a meter swap.
    Counter,
    /// An instantaneous value (temperature, power): aggregated by min/max/mean/last.
    Gauge,
}

impl SeriesKind {
    /// Stable text form (`counter`, `gauge`), as stored in the registry.
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesKind::Counter => "counter",
            SeriesKind::Gauge => "gauge",
        }
    }
}

/// The energies (and water) that a building consumes and that the dashboard reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Energy {
    /// Electricity, in kWh.
    Electricity,
    /// Natural gas, in m³ (converted to kWh with the PCS coefficient in reports).
    Gas,
    /// Water, in m³.
    Water,
}

impl Energy {
    /// All energies, in display order.
    pub const ALL: [Energy; 3] = [Energy::Electricity, Energy::Gas, Energy::Water];

    /// The counter quantity that meters of this energy publish.
    pub fn index_quantity(self) -> Quantity {
        match self {
            Energy::Electricity => Quantity::ElectricityKwh,
            Energy::Gas => Quantity::GasM3,
            Energy::Water => Quantity::WaterM3,
        }
    }
    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Energy::Electricity => "electricity",
            Energy::Gas => "gas",
            Energy::Water => "water",
        }
    }
    /// French label for the dashboard.
    pub fn label_fr(self) -> &'static str {
        match self {
            Energy::Electricity => "Électricité",
            Energy::Gas => "Gaz",
            Energy::Water => "Eau",
        }
    }
}

impl FromStr for Energy {
    type Err = UnknownQuantity;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "electricity" => Ok(Energy::Electricity),
            "gas" => Ok(Energy::Gas),
            "water" => Ok(Energy::Water),
            _ => Err(UnknownQuantity(s.chars().take(64).collect())),
        }
    }
}

/// A unit of measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Unit {
    /// Kilowatt-hour.
    #[serde(rename = "kWh")]
    KilowattHour,
    /// Watt.
    #[serde(rename = "W")]
    Watt,
    /// Cubic metre.
    #[serde(rename = "m³")]
    CubicMetre,
    /// Parts per million.
    #[serde(rename = "ppm")]
    Ppm,
    /// Degree Celsius.
    #[serde(rename = "°C")]
    Celsius,
    /// Percent.
    #[serde(rename = "%")]
    Percent,
    /// Pulses of a pulse-output meter (dimensionless count).
    #[serde(rename = "imp")]
    Pulse,
}

impl Unit {
    /// The unit's symbol, as shown and as returned by the API.
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::KilowattHour => "kWh",
            Unit::Watt => "W",
            Unit::CubicMetre => "m³",
            Unit::Ppm => "ppm",
            Unit::Celsius => "°C",
            Unit::Percent => "%",
            Unit::Pulse => "imp",
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// A name that is not in the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown quantity {0:?}")]
pub struct UnknownQuantity(pub String);

macro_rules! quantities {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $unit:ident, $kind:ident, $min:expr, $max:expr, $fr:literal; )*) => {
        /// A measured quantity. Its name fixes its unit and kind.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Quantity {
            $( $(#[$doc])* #[serde(rename = $name)] $variant, )*
        }

        impl Quantity {
            /// Every quantity of the vocabulary.
            pub const ALL: &'static [Quantity] = &[$(Quantity::$variant),*];

            /// The name devices publish and the API uses.
            pub fn name(self) -> &'static str {
                match self { $(Quantity::$variant => $name,)* }
            }
            /// The unit values are expressed in.
            pub fn unit(self) -> Unit {
                match self { $(Quantity::$variant => Unit::$unit,)* }
            }
            /// Counter (index) or gauge.
            pub fn kind(self) -> SeriesKind {
                match self { $(Quantity::$variant => SeriesKind::$kind,)* }
            }
            /// The physically plausible range of a value; outside it, a value is refused.
            pub fn range(self) -> (f64, f64) {
                match self { $(Quantity::$variant => ($min, $max),)* }
            }
            /// French label for the dashboard.
            pub fn label_fr(self) -> &'static str {
                match self { $(Quantity::$variant => $fr,)* }
            }
        }

        impl FromStr for Quantity {
            type Err = UnknownQuantity;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(Quantity::$variant),)*
                    _ => Err(UnknownQuantity(s.chars().take(64).collect())),
                }
            }
        }
    };
}

quantities! {
    /// Electricity meter index.
    ElectricityKwh = "electricity_kwh", KilowattHour, Counter, 0.0, 1e12, "Index électricité";
    /// Active power.
    PowerW = "power_w", Watt, Gauge, -1e8, 1e8, "Puissance";
    /// Gas meter index.
    GasM3 = "gas_m3", CubicMetre, Counter, 0.0, 1e12, "Index gaz";
    /// Water meter index.
    WaterM3 = "water_m3", CubicMetre, Counter, 0.0, 1e12, "Index eau";
    /// CO2 concentration indoors.
    Co2Ppm = "co2_ppm", Ppm, Gauge, 0.0, 40_000.0, "CO₂";
    /// Indoor temperature.
    TemperatureC = "temperature_c", Celsius, Gauge, -50.0, 100.0, "Température";
    /// Relative humidity.
    HumidityPct = "humidity_pct", Percent, Gauge, 0.0, 100.0, "Humidité";
    /// Outdoor temperature.
    OutdoorTemperatureC = "outdoor_temperature_c", Celsius, Gauge, -60.0, 60.0, "Température extérieure";
    /// Gas meter index converted to energy with the building's PCS coefficient
    /// (derived by ingest from `gas_m3`; kept beside it).
    GasKwh = "gas_kwh", KilowattHour, Counter, 0.0, 1e13, "Index gaz (énergie)";
    /// Raw count of a pulse-output meter; ingest converts it to the meter's index with
    /// the device's pulse factor and keeps both.
    Pulses = "pulses", Pulse, Counter, 0.0, 1e15, "Impulsions";
}

impl Quantity {
    /// Whether `value` is a finite number within the physical range.
    pub fn check(self, value: f64) -> Result<(), OutOfRange> {
        let (min, max) = self.range();
        if value.is_finite() && value >= min && value <= max {
            Ok(())
        } else {
            Err(OutOfRange {
                quantity: self,
                value,
                min,
                max,
            })
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value outside the physical range of its quantity.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{quantity} = {value} is outside the physical range [{min}, {max}]")]
pub struct OutOfRange {
    /// The quantity.
    pub quantity: Quantity,
    /// The refused value.
    pub value: f64,
    /// Lowest plausible value.
    pub min: f64,
    /// Highest plausible value.
    pub max: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_quantity_name_parses_back_to_itself() {
        for q in Quantity::ALL {
            assert_eq!(q.name().parse::<Quantity>(), Ok(*q));
            assert_eq!(
                serde_json::to_string(q).ok(),
                Some(format!("\"{}\"", q.name()))
            );
        }
    }

    #[test]
    fn meter_indexes_are_counters_and_sensors_are_gauges() {
        assert_eq!(Quantity::GasM3.kind(), SeriesKind::Counter);
        assert_eq!(Quantity::Co2Ppm.kind(), SeriesKind::Gauge);
        assert_eq!(Quantity::GasM3.unit().symbol(), "m³");
    }

    #[test]
    fn impossible_values_are_refused() {
        assert!(Quantity::HumidityPct.check(120.0).is_err());
        assert!(Quantity::Co2Ppm.check(f64::NAN).is_err());
        assert!(Quantity::Co2Ppm.check(812.0).is_ok());
        assert!("co2".parse::<Quantity>().is_err());
    }
}
