//! Errors of the shared crate. Each variant names what failed and carries what a user needs to
//! fix it: the file, the row or column, the key.

use std::path::PathBuf;

use thiserror::Error;

/// A hyperparameter that cannot be used.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ParamError {
    /// The key is not a hyperparameter.
    #[error("unknown parameter `{key}`{}", suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The nearest valid key.
        suggestion: Option<String>,
    },
    /// The value has the wrong type or is out of range.
    #[error("parameter `{key}`: {message}")]
    Invalid {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Input data that cannot be turned into samples.
#[derive(Debug, Error)]
pub enum DataError {
    /// The file could not be opened or parsed at all.
    #[error("{}: {message}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A required column is absent.
    #[error("{}: missing column `{column}`; columns found: {found}. Set the column name in the spec's data.columns", path.display())]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column that was expected.
        column: String,
        /// The columns present, comma separated.
        found: String,
    },
    /// Any other problem with specific rows or values.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming rows and values, and what to do.
        message: String,
    },
    /// Not enough days for the windows and splits.
    #[error("series {series} has {days} days; at least {needed} are needed for input + horizon + three splits")]
    TooShort {
        /// The series.
        series: String,
        /// Days present.
        days: usize,
        /// Days needed.
        needed: usize,
    },
    /// A polars operation failed.
    #[error("data frame operation failed: {0}")]
    Frame(String),
    /// A pipeline setting is out of range.
    #[error("{key}: {message}")]
    Config {
        /// The setting's path in the spec, e.g. `calendar.tet_holiday_span`.
        key: String,
        /// What is wrong and what to write instead.
        message: String,
    },
}
