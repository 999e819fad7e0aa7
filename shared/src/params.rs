//! Hyperparameters of one trial: every knob of the model, the loss and the trainer.
//!
//! A sweep spec's `parameters` section and `sweep train --set key=value` both produce a flat
//! map of these keys; [`HyperParams::from_map`] turns it into a typed value and rejects unknown
//! keys with the nearest valid name. Defaults are the ones documented on each field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ParamError;

/// Which training loss a trial optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// Squared error weighted by `under_penalty` / `over_penalty` and the peak-season boost.
    #[default]
    Asymmetric,
    /// Plain mean squared error.
    Mse,
    /// Pinball loss at `quantile` (for example 0.9 for a P90 forecast).
    Quantile,
}

/// How targets are transformed before scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TargetTransform {
    /// Standardise the raw volume.
    #[default]
    None,
    /// Standardise `ln(1 + volume)`; forecasts are mapped back with `exp(x) - 1`.
    Log1p,
}

/// Every sweepable knob of one trial, with its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HyperParams {
    /// Category embedding width. Default 5.
    pub cat_emb_dim: usize,
    /// LSTM hidden size. Default 128.
    pub hidden_size: usize,
    /// Stacked LSTM layers. Default 2.
    pub n_layers: usize,
    /// Static-branch MLP sizes. Default [64, 32].
    pub dense_hidden_sizes: Vec<usize>,
    /// Fusion MLP sizes. Default [64].
    pub fusion_hidden_sizes: Vec<usize>,
    /// Dropout probability everywhere. Default 0.2.
    pub dropout: f64,
    /// LayerNorm after the LSTM and in each MLP block. Default true.
    pub use_layer_norm: bool,
    /// Loss to optimise. Default asymmetric.
    pub loss: LossKind,
    /// Weight of under-forecast errors (actual > forecast). Default 3.0.
    pub under_penalty: f64,
    /// Weight of over-forecast errors. Default 1.0.
    pub over_penalty: f64,
    /// Multiplier on target days inside the category's peak season. Default 2.0.
    pub peak_season_boost: f64,
    /// Quantile of the pinball loss. Default 0.9.
    pub quantile: f64,
    /// Adam learning rate. Default 1e-3.
    pub learning_rate: f64,
    /// Adam weight decay. Default 0.0.
    pub weight_decay: f64,
    /// Mini-batch size. Default 32.
    pub batch_size: usize,
    /// Maximum epochs. Default 30.
    pub epochs: usize,
    /// Epochs without validation improvement before stopping. Default 8.
    pub early_stopping_patience: usize,
    /// Gradient-norm clipping threshold; 0 disables it. Default 1.0.
    pub grad_clip: f64,
    /// Target transform before scaling. Default none.
    pub target_transform: TargetTransform,
    /// Seed of initialisation, shuffling and dropout. Default 42.
    pub seed: u64,
}

impl Default for HyperParams {
    fn default() -> Self {
        Self {
            cat_emb_dim: 5,
            hidden_size: 128,
            n_layers: 2,
            dense_hidden_sizes: vec![64, 32],
            fusion_hidden_sizes: vec![64],
            dropout: 0.2,
            use_layer_norm: true,
            loss: LossKind::Asymmetric,
            under_penalty: 3.0,
            over_penalty: 1.0,
            peak_season_boost: 2.0,
            quantile: 0.9,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            batch_size: 32,
            epochs: 30,
            early_stopping_patience: 8,
            grad_clip: 1.0,
            target_transform: TargetTransform::None,
            seed: 42,
        }
    }
}

impl HyperParams {
    /// Every key a spec or `--set` may name, in declaration order.
    pub const KEYS: &'static [&'static str] = &[
        "cat_emb_dim",
        "hidden_size",
        "n_layers",
        "dense_hidden_sizes",
        "fusion_hidden_sizes",
        "dropout",
        "use_layer_norm",
        "loss",
        "under_penalty",
        "over_penalty",
        "peak_season_boost",
        "quantile",
        "learning_rate",
        "weight_decay",
        "batch_size",
        "epochs",
        "early_stopping_patience",
        "grad_clip",
        "target_transform",
        "seed",
    ];

    /// Builds parameters from defaults overridden by `map`.
    ///
    /// Integers written as floats (`1.0`) are accepted for integer keys; an unknown key is
    /// rejected with the nearest valid key; a value of the wrong type names the key.
    pub fn from_map(map: &BTreeMap<String, Value>) -> Result<Self, ParamError> {
        for key in map.keys() {
            if !Self::KEYS.contains(&key.as_str()) {
                return Err(ParamError::UnknownKey {
                    key: key.clone(),
                    suggestion: nearest(key, Self::KEYS),
                });
            }
        }
        let mut merged = serde_json::to_value(Self::default()).expect("params serialise");
        let obj = merged.as_object_mut().expect("params are an object");
        for (key, value) in map {
            obj.insert(key.clone(), normalise_integral(key, value));
        }
        // The path of the first field that fails to deserialise is the key to blame.
        let params: Self = serde_path_to_error::deserialize(merged).map_err(|err| {
            let key = err.path().iter().next().map(|segment| segment.to_string());
            ParamError::Invalid {
                key: key.unwrap_or_else(|| "parameters".to_string()),
                message: err.into_inner().to_string(),
            }
        })?;
        params.validate()?;
        Ok(params)
    }

    /// Parses one `key=value` assignment as given to `--set`; the value is read as YAML so
    /// `hidden_size=64`, `dense_hidden_sizes=[32,16]` and `loss=mse` all work.
    pub fn parse_assignment(text: &str) -> Result<(String, Value), ParamError> {
        let (key, raw) = text.split_once('=').ok_or_else(|| ParamError::Invalid {
            key: text.to_string(),
            message: "expected key=value".into(),
        })?;
        let value: Value =
            serde_norway::from_str(raw.trim()).map_err(|err| ParamError::Invalid {
                key: key.trim().to_string(),
                message: err.to_string(),
            })?;
        let key = key.trim();
        if key.is_empty() {
            return Err(ParamError::Invalid {
                key: text.to_string(),
                message: "the key before `=` is empty; write key=value, e.g. hidden_size=64".into(),
            });
        }
        Ok((key.to_string(), value))
    }

    /// Range checks that serde types cannot express.
    pub fn validate(&self) -> Result<(), ParamError> {
        let bad = |key: &str, message: &str| {
            Err(ParamError::Invalid {
                key: key.to_string(),
                message: message.to_string(),
            })
        };
        if self.hidden_size == 0 {
            return bad("hidden_size", "must be at least 1");
        }
        if self.n_layers == 0 {
            return bad("n_layers", "must be at least 1");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", "must be in [0, 1)");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad("learning_rate", "must be a positive number");
        }
        if !(0.0 < self.quantile && self.quantile < 1.0) {
            return bad("quantile", "must be in (0, 1)");
        }
        for (key, value) in [
            ("under_penalty", self.under_penalty),
            ("over_penalty", self.over_penalty),
            ("peak_season_boost", self.peak_season_boost),
        ] {
            if !(value > 0.0 && value.is_finite()) {
                return bad(key, "must be a positive number");
            }
        }
        Ok(())
    }
}

/// The candidate closest to `key` by edit distance, when it is plausibly a misspelling.
pub fn nearest(key: &str, candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(key, c), *c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// Integer keys accept `1.0`: the canonical form of an integral float is an integer.
fn normalise_integral(key: &str, value: &Value) -> Value {
    let integer_keys = [
        "cat_emb_dim",
        "hidden_size",
        "n_layers",
        "batch_size",
        "epochs",
        "early_stopping_patience",
        "seed",
    ];
    match value {
        Value::Number(n) if integer_keys.contains(&key) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && (0.0..9.0e15).contains(&f) => Value::from(f as u64),
            _ => value.clone(),
        },
        _ => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_key_suggests_nearest_valid_key() {
        let map = BTreeMap::from([("hiden_size".to_string(), Value::from(64))]);
        let err = HyperParams::from_map(&map).unwrap_err();
        assert!(err.to_string().contains("hidden_size"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key_at_fault() {
        let (k, v) = HyperParams::parse_assignment("hidden_size=abc").unwrap();
        let err = HyperParams::from_map(&BTreeMap::from([(k, v)])).unwrap_err();
        assert!(
            err.to_string().starts_with("parameter `hidden_size`"),
            "{err}"
        );
    }

    #[test]
    fn assignment_without_a_key_is_rejected() {
        let err = HyperParams::parse_assignment("=5").unwrap_err();
        assert!(err.to_string().contains("key before `=` is empty"), "{err}");
    }

    #[test]
    fn non_positive_penalty_names_its_own_key() {
        let map = BTreeMap::from([("over_penalty".to_string(), Value::from(0.0))]);
        let err = HyperParams::from_map(&map).unwrap_err();
        assert!(err.to_string().contains("over_penalty"), "{err}");
    }

    #[test]
    fn integral_float_is_accepted_for_integer_key() {
        let map = BTreeMap::from([("hidden_size".to_string(), Value::from(64.0))]);
        assert_eq!(HyperParams::from_map(&map).unwrap().hidden_size, 64);
    }

    #[test]
    fn assignment_parses_lists_and_enums() {
        let (k, v) = HyperParams::parse_assignment("dense_hidden_sizes=[32, 16]").unwrap();
        let (k2, v2) = HyperParams::parse_assignment("loss=quantile").unwrap();
        let map = BTreeMap::from([(k, v), (k2, v2)]);
        let p = HyperParams::from_map(&map).unwrap();
        assert_eq!(p.dense_hidden_sizes, vec![32, 16]);
        assert_eq!(p.loss, LossKind::Quantile);
    }
}
