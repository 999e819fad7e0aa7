//! The NATS JetStream side of a sweep: connection options, the streams, consumers, buckets and
//! object stores of [`shared::protocol`], the [`transport::NatsTransport`] the sweep engine runs
//! on, the worker loop of `sweep worker`, and the read-only queries of `sweep status`,
//! `sweep leaderboard`, `sweep cancel` and `sweep retry-failed`.
//!
//! Everything here is async (tokio); the commands enter it through [`runtime`]. The subjects and
//! message types are defined once, in [`shared::protocol`]; `docs/PROTOCOL.md` explains them.

pub mod launch;
pub mod query;
pub mod session;
pub mod transport;
pub mod worker;

use std::time::Duration;

use async_nats::{Client, ConnectErrorKind, ConnectOptions, ServerAddr};
use thiserror::Error;

use crate::cli::NatsArgs;

/// Everything that can go wrong talking to NATS.
#[derive(Debug, Error)]
pub enum NatsError {
    /// No URL was given.
    #[error("no NATS server given: pass --nats URL or set SWEEP_NATS_URL")]
    NoUrl,
    /// A URL of the list cannot be parsed.
    #[error("invalid NATS URL `{url}`: {message}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// The parser's complaint.
        message: String,
    },
    /// A credentials, certificate or key file cannot be read.
    #[error("cannot read {what} {path}: {message}")]
    File {
        /// What the file is for.
        what: &'static str,
        /// The path.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// The server is not reachable.
    #[error("cannot connect to NATS at {url}: {message}; is nats-server running and reachable from here?")]
    Unreachable {
        /// The URL list.
        url: String,
        /// The client's error.
        message: String,
    },
    /// The server refused the credentials.
    #[error("NATS at {url} refused the credentials ({message}); pass --nats-user and --nats-password, --nats-token or --nats-creds (or the SWEEP_NATS_* variables) with credentials the server accepts")]
    Refused {
        /// The URL list.
        url: String,
        /// The client's error.
        message: String,
    },
    /// A JetStream operation failed.
    #[error("NATS JetStream: {what} failed: {message}")]
    JetStream {
        /// The operation, e.g. `creating stream SWEEP_TRIALS`.
        what: String,
        /// The client's error.
        message: String,
    },
    /// The server does not answer the JetStream API for this user.
    #[error("NATS JetStream: {what} got no answer ({message}); the server refuses this user the JetStream API or has JetStream disabled: a worker needs the permissions of the user `worker` in deploy/nats/auth.conf, a coordinator those of `coordinator`")]
    NoJetStream {
        /// The operation, e.g. `looking up stream SWEEP_TRIALS`.
        what: String,
        /// The client's error.
        message: String,
    },
    /// The sweep is recorded on the server with other data than this launch's.
    #[error("sweep `{sweep}` on this NATS server was launched on other data (dataset digest {recorded}, this launch has {current}); results of different data never mix: give the spec another name")]
    OtherData {
        /// The sweep name.
        sweep: String,
        /// Digest in the recorded manifest.
        recorded: String,
        /// Digest of this launch's data.
        current: String,
    },
    /// A sweep that is not recorded on the server.
    #[error("sweep `{sweep}` is not recorded on this NATS server; launch it with `sweep launch SPEC --nats URL`")]
    UnknownSweep {
        /// The sweep name.
        sweep: String,
    },
    /// A message does not follow the protocol.
    #[error(transparent)]
    Protocol(#[from] shared::protocol::ProtocolError),
    /// A dataset's bytes do not match the digest it is stored under.
    #[error("dataset {digest} fetched from the object store has digest {found}; the store is corrupt, launch the sweep again to upload it")]
    DigestMismatch {
        /// The expected digest.
        digest: String,
        /// The digest of the bytes received.
        found: String,
    },
}

impl NatsError {
    /// Wraps any JetStream client error with the operation it belongs to.
    pub fn jetstream(what: impl Into<String>, err: impl std::fmt::Display) -> Self {
        NatsError::JetStream {
            what: what.into(),
            message: err.to_string(),
        }
    }
}

/// A multi-threaded tokio runtime for a command that talks to NATS.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sweep-nats")
        .build()
}

/// Parses the comma-separated URL list of `--nats`.
pub fn server_addrs(urls: &str) -> Result<Vec<ServerAddr>, NatsError> {
    let addrs = urls
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            url.parse::<ServerAddr>().map_err(|err| NatsError::BadUrl {
                url: url.to_string(),
                message: err.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err(NatsError::NoUrl);
    }
    Ok(addrs)
}

/// Connects with the options of `args`. `name` is the client name the server shows.
///
/// The first connection is tried once per server, so a wrong URL or refused credentials fail
/// fast with a clear message; after that the client reconnects for ever (a restarted server is
/// picked up again without losing the session).
///
/// # Cancel safety
///
/// Cancel safe: dropping the future drops the half-open connection.
pub async fn connect(args: &NatsArgs, name: &str) -> Result<Client, NatsError> {
    let url = args.url.clone().ok_or(NatsError::NoUrl)?;
    let addrs = server_addrs(&url)?;

    let mut options = ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .reconnect_delay_callback(|attempt| {
            Duration::from_millis((100 * attempt as u64).min(2_000))
        });
    if let (Some(user), Some(password)) = (&args.user, &args.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &args.token {
        options = options.token(token.clone());
    }
    if let Some(creds) = &args.creds {
        options = options
            .credentials_file(creds)
            .await
            .map_err(|err| NatsError::File {
                what: "credentials file",
                path: creds.display().to_string(),
                message: err.to_string(),
            })?;
    }
    if let Some(ca) = &args.tls_ca {
        check_readable("TLS CA certificate", ca)?;
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            check_readable("TLS client certificate", cert)?;
            check_readable("TLS client key", key)?;
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(NatsError::File {
                what: "TLS client certificate and key",
                path: "--nats-tls-cert/--nats-tls-key".into(),
                message: "both must be given together".into(),
            })
        }
        (None, None) => {}
    }

    options.connect(addrs).await.map_err(|err| {
        let message = err.to_string();
        match err.kind() {
            ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                NatsError::Refused { url, message }
            }
            _ => NatsError::Unreachable { url, message },
        }
    })
}

fn check_readable(what: &'static str, path: &std::path::Path) -> Result<(), NatsError> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|err| NatsError::File {
            what,
            path: path.display().to_string(),
            message: err.to_string(),
        })
}

/// Reads a duration in milliseconds from an environment variable, with a default.
pub(crate) fn env_millis(name: &str, default: Duration) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_list_is_split_on_commas() {
        let addrs = server_addrs("nats://a:4222, nats://b:4223").unwrap();

        assert_eq!(addrs.len(), 2);
    }

    #[test]
    fn empty_url_list_asks_for_a_server() {
        assert!(matches!(server_addrs(" , "), Err(NatsError::NoUrl)));
    }

    #[tokio::test]
    async fn unreachable_server_is_reported_with_its_url() {
        // Port 1 on loopback is never a NATS server.
        let args = NatsArgs {
            url: Some("nats://127.0.0.1:1".into()),
            ..NatsArgs::default()
        };

        let err = connect(&args, "test").await.unwrap_err();

        assert!(matches!(err, NatsError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("nats://127.0.0.1:1"));
    }
}
