//! The deploy manifests (`deploy/`, `docs/DEPLOY.md`) against the code, and the cluster they
//! describe against a real nats-server.
//!
//! The lint tests read every manifest and fail when one names a subcommand, flag, environment
//! variable, file, stream or subject that the project does not have, so the manifests cannot
//! drift from the code unnoticed. The server tests start nats-server from `deploy/nats/` on
//! loopback ports that the test picks: the deploy users' permissions are tried on a real
//! server, and a sweep runs on the three-node cluster while one node is killed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use shared::protocol;

use crate::common::nats_server::nats_server_bin;
use crate::common::{repo_root, sweep_bin};

/// Passwords the server tests give the two deploy users.
const COORDINATOR_PASSWORD: &str = "coordinator-test-secret";
const WORKER_PASSWORD: &str = "worker-test-secret";

// ---------------------------------------------------------------------------------------------
// Manifest files
// ---------------------------------------------------------------------------------------------

fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

fn deploy_doc() -> PathBuf {
    repo_root().join("docs/DEPLOY.md")
}

/// Every file under `deploy/`, sorted, then `docs/DEPLOY.md`.
fn manifest_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }

    let mut files = Vec::new();
    walk(&deploy_dir(), &mut files);
    files.sort();
    files.push(deploy_doc());
    files
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A path relative to the repository root, for messages.
fn shown(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn extension(path: &Path) -> &str {
    path.extension().and_then(|e| e.to_str()).unwrap_or("")
}

/// Every YAML document of a file, with `<<` merge keys applied.
fn yaml_documents(path: &Path) -> Vec<serde_norway::Value> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            let mut value = serde_norway::Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", shown(path)));
            value
                .apply_merge()
                .unwrap_or_else(|e| panic!("{}: bad merge key: {e}", shown(path)));
            value
        })
        .collect()
}

/// Looks up a path of mapping keys in a YAML value.
fn yaml_at<'a>(value: &'a serde_norway::Value, keys: &[&str]) -> Option<&'a serde_norway::Value> {
    keys.iter().try_fold(value, |v, key| v.get(*key))
}

fn yaml_str(value: &serde_norway::Value) -> String {
    match value {
        serde_norway::Value::String(s) => s.clone(),
        serde_norway::Value::Number(n) => n.to_string(),
        serde_norway::Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, found {other:?}"),
    }
}

fn yaml_strings(value: &serde_norway::Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("expected a list, found {value:?}"))
        .iter()
        .map(yaml_str)
        .collect()
}

/// The keys of a YAML mapping (`environment:` in compose), or the names of a `- name:` list
/// (`env:` in Kubernetes).
fn env_names(value: &serde_norway::Value) -> BTreeSet<String> {
    match value {
        serde_norway::Value::Mapping(map) => map.keys().map(yaml_str).collect(),
        serde_norway::Value::Sequence(list) => list
            .iter()
            .map(|item| yaml_str(item.get("name").expect("env entry has a name")))
            .collect(),
        other => panic!("expected an environment, found {other:?}"),
    }
}

/// Words made of `[A-Z0-9_]` that start with `prefix`, e.g. every `SWEEP_*` in a text.
fn upper_words(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = text.as_bytes();
    let is_word = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !is_word(bytes[i - 1]);
        if starts_word && bytes[i..].starts_with(prefix.as_bytes()) {
            let end = (i..bytes.len())
                .find(|&j| !is_word(bytes[j]))
                .unwrap_or(bytes.len());
            // `SWEEP_*` or `SWEEP_NATS_*` in prose names a family, not a variable.
            if !text[i..end].ends_with('_') {
                found.insert(text[i..end].to_string());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    found
}

/// All Rust sources of the three crates, concatenated: what the environment-variable lint
/// greps.
fn crate_sources() -> String {
    fn walk(dir: &Path, out: &mut String) {
        for entry in fs::read_dir(dir).expect("crate source folder") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if extension(&path) == "rs" {
                out.push_str(&read(&path));
                out.push('\n');
            }
        }
    }

    let mut sources = String::new();
    for krate in ["shared", "worker", "coordinator"] {
        walk(&repo_root().join(krate).join("src"), &mut sources);
    }
    sources
}

// ---------------------------------------------------------------------------------------------
// The nats-server configuration format, as far as deploy/nats/auth.conf uses it
// ---------------------------------------------------------------------------------------------

/// A value of a nats-server configuration file.
#[derive(Debug, Clone)]
enum Conf {
    Str(String),
    List(Vec<Conf>),
    Map(Vec<(String, Conf)>),
}

impl Conf {
    fn get(&self, key: &str) -> Option<&Conf> {
        match self {
            Conf::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn strings(&self) -> Vec<String> {
        match self {
            Conf::Str(s) => vec![s.clone()],
            Conf::List(items) => items.iter().flat_map(Conf::strings).collect(),
            Conf::Map(_) => panic!("expected strings, found a map: {self:?}"),
        }
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Open(char),
    Close(char),
    Word(String),
}

/// Splits a configuration into braces, brackets and words; separators (`=`, `:`, `,`, `;`)
/// and comments (`#`, `//`) are dropped.
fn conf_tokens(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '{' | '[' => tokens.push(Token::Open(c)),
            '}' | ']' => tokens.push(Token::Close(c)),
            '"' | '\'' => {
                let word: String = chars.by_ref().take_while(|&d| d != c).collect();
                tokens.push(Token::Word(word));
            }
            c if c.is_whitespace() || "=:,;".contains(c) => {}
            c => {
                let mut word = c.to_string();
                while let Some(&d) = chars.peek() {
                    if d.is_whitespace() || "=:,;{}[]".contains(d) {
                        break;
                    }
                    word.push(d);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    tokens
}

/// Parses a configuration file into a map. Top-level keys double as variables (`$NAME`), as
/// nats-server treats them; unknown `$NAME`s (environment variables) stay as text.
fn parse_conf(text: &str) -> Conf {
    struct Parser {
        tokens: std::vec::IntoIter<Token>,
        vars: BTreeMap<String, Conf>,
    }

    impl Parser {
        fn value(&mut self, token: Token) -> Conf {
            match token {
                Token::Open('{') => self.map(false),
                Token::Open(_) => self.list(),
                Token::Word(word) => match word.strip_prefix('$') {
                    Some(var) => self.vars.get(var).cloned().unwrap_or(Conf::Str(word)),
                    None => Conf::Str(word),
                },
                Token::Close(c) => panic!("unexpected `{c}` in the configuration"),
            }
        }

        fn map(&mut self, top: bool) -> Conf {
            let mut entries = Vec::new();
            while let Some(token) = self.tokens.next() {
                let key = match token {
                    Token::Word(key) => key,
                    Token::Close('}') if !top => break,
                    other => panic!("expected a key, found {other:?}"),
                };
                let token = self.tokens.next().expect("a value after the key");
                let value = self.value(token);
                if top {
                    self.vars.insert(key.clone(), value.clone());
                }
                entries.push((key, value));
            }
            Conf::Map(entries)
        }

        fn list(&mut self) -> Conf {
            let mut items = Vec::new();
            loop {
                match self.tokens.next().expect("a closing `]`") {
                    Token::Close(']') => break,
                    token => items.push(self.value(token)),
                }
            }
            Conf::List(items)
        }
    }

    let mut parser = Parser {
        tokens: conf_tokens(text).into_iter(),
        vars: BTreeMap::new(),
    };
    parser.map(true)
}

/// True when a NATS subject matches a permission pattern (`*` one token, `>` the rest).
fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for token in pattern.split('.') {
        if token == ">" {
            return subject_tokens.next().is_some();
        }
        match subject_tokens.next() {
            Some(s) if token == "*" || token == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// One user's permissions in `deploy/nats/auth.conf`.
#[derive(Debug)]
struct Permissions {
    publish_allow: Vec<String>,
    publish_deny: Vec<String>,
    subscribe_allow: Vec<String>,
}

impl Permissions {
    fn can_publish(&self, subject: &str) -> bool {
        self.publish_allow
            .iter()
            .any(|p| subject_matches(p, subject))
            && !self
                .publish_deny
                .iter()
                .any(|p| subject_matches(p, subject))
    }

    fn can_subscribe(&self, subject: &str) -> bool {
        self.subscribe_allow
            .iter()
            .any(|p| subject_matches(p, subject))
    }

    /// Every pattern the user is given, allowed or denied.
    fn patterns(&self) -> impl Iterator<Item = &String> {
        self.publish_allow
            .iter()
            .chain(&self.publish_deny)
            .chain(&self.subscribe_allow)
    }
}

/// The account holding the sweep's users, and each user's permissions.
fn deploy_users() -> (String, BTreeMap<String, Permissions>) {
    let path = deploy_dir().join("nats/auth.conf");
    let conf = parse_conf(&read(&path));
    let Some(Conf::Map(accounts)) = conf.get("accounts") else {
        panic!("{} has no accounts block", shown(&path));
    };
    assert_eq!(accounts.len(), 1, "{}: one account expected", shown(&path));
    let (account, body) = &accounts[0];

    let mut users = BTreeMap::new();
    let Some(Conf::List(list)) = body.get("users") else {
        panic!("{}: account {account} has no users list", shown(&path));
    };
    for user in list {
        let name = user.get("user").expect("user name").strings().remove(0);
        let perms = user
            .get("permissions")
            .unwrap_or_else(|| panic!("user {name} has no permissions"));
        let list = |keys: &[&str]| {
            keys.iter()
                .try_fold(perms, |conf, key| conf.get(key))
                .map(Conf::strings)
                .unwrap_or_default()
        };
        users.insert(
            name,
            Permissions {
                publish_allow: list(&["publish", "allow"]),
                publish_deny: list(&["publish", "deny"]),
                subscribe_allow: list(&["subscribe", "allow"]),
            },
        );
    }
    (account.clone(), users)
}

/// The stream or bucket a JetStream permission pattern names, if any: the first token after
/// the API words (`$JS.API.STREAM.INFO.<name>`, `$JS.ACK.<name>.>`, `$KV.<name>.>`).
fn named_stream(pattern: &str) -> Option<&str> {
    let tokens: Vec<&str> = pattern.split('.').collect();
    let rest = match tokens.first() {
        Some(&"$JS") if tokens.len() > 2 => &tokens[2..],
        Some(&"$KV" | &"$O") if tokens.len() > 1 => &tokens[1..2],
        _ => return None,
    };
    rest.iter()
        .copied()
        .find(|t| !t.chars().all(|c| c.is_ascii_uppercase()))
        .filter(|t| !["*", ">"].contains(t))
}

// ---------------------------------------------------------------------------------------------
// The sweep binary's command line
// ---------------------------------------------------------------------------------------------

fn help_text(args: &[&str]) -> String {
    let output = Command::new(sweep_bin())
        .args(args)
        .arg("--help")
        .output()
        .expect("running sweep --help");
    assert!(output.status.success(), "sweep {args:?} --help failed");
    String::from_utf8(output.stdout).expect("help is UTF-8")
}

/// The subcommands `sweep --help` lists.
fn subcommands() -> BTreeSet<String> {
    let help = help_text(&[]);
    let mut lines = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1);
    let mut commands = BTreeSet::new();
    for line in lines.by_ref() {
        if !line.starts_with("  ") {
            break;
        }
        if let Some(word) = line.split_whitespace().next() {
            commands.insert(word.to_string());
        }
    }
    assert!(commands.contains("worker"), "no worker command in:\n{help}");
    commands
}

/// The long flags a subcommand's help mentions.
fn flags_of(command: &str) -> BTreeSet<String> {
    let help = help_text(&[command]);
    help.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.split(['=', '<'])
                .next()
                .unwrap_or(w)
                .trim_end_matches('.')
                .to_string()
        })
        .collect()
}

/// A `sweep` command line found in a manifest.
#[derive(Debug)]
struct SweepCall {
    file: String,
    args: Vec<String>,
}

/// Shell-ish words of one command line (quotes removed, no expansion).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => quote = Some(c),
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            (None, c) => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The `sweep` invocations in shell-like text: lines (joined over trailing `\`) where a word
/// that names the binary (`sweep`, `/usr/local/bin/sweep`, `cargo run --bin sweep --`) is
/// followed by a subcommand. Commands are read from code: in Markdown, fenced blocks; in other
/// files, lines that are not comments, and comment lines indented as examples (`#   sweep ...`),
/// so that prose which merely starts with the word "sweep" is left alone.
fn calls_in_shell_text(file: &str, text: &str, markdown: bool) -> Vec<SweepCall> {
    let mut code = String::new();
    let mut in_fence = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let kept = if markdown {
            if trimmed.starts_with("```") {
                in_fence = !in_fence;
                continue;
            }
            in_fence.then_some(line)
        } else if let Some(comment) = trimmed.strip_prefix('#') {
            comment.starts_with("  ").then(|| comment.trim_start())
        } else {
            Some(line)
        };
        if let Some(line) = kept {
            code.push_str(line);
            code.push('\n');
        }
    }

    let joined = code.replace("\\\n", " ");
    let mut calls = Vec::new();
    for line in joined.lines() {
        let line = line.trim_start_matches(['#', ' ', '$']);
        let line = line.strip_prefix("ExecStart=").unwrap_or(line);
        let words = shell_words(line);
        let Some(start) = words
            .iter()
            .position(|w| w == "sweep" || w.ends_with("/sweep"))
        else {
            continue;
        };
        // `cargo run --bin sweep -- launch ...`
        let mut args: Vec<String> = words[start + 1..].to_vec();
        if args.first().map(String::as_str) == Some("--") {
            args.remove(0);
        }
        // At the start of the line (after `VAR=value` assignments), or run by cargo or exec.
        let is_env_assignment = |w: &String| {
            w.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            })
        };
        let is_call = words[..start].iter().all(is_env_assignment)
            || ["--bin", "exec", "&&"].contains(&words[start - 1].as_str());
        let looks_like_command = args.first().is_some_and(|a| {
            !a.starts_with('-') && a.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        });
        if is_call && looks_like_command {
            args.retain(|a| !a.starts_with('#'));
            let end = args.iter().position(|a| a == "|" || a == "&&" || a == ";");
            args.truncate(end.unwrap_or(args.len()));
            calls.push(SweepCall {
                file: file.to_string(),
                args,
            });
        }
    }
    calls
}

/// Every `sweep` invocation in the manifests: compose commands (the images' entrypoint is
/// `sweep`), Kubernetes container args, Dockerfile CMDs, the systemd ExecStart, and the
/// command lines in comments and in docs/DEPLOY.md code blocks.
fn sweep_calls() -> Vec<SweepCall> {
    let mut calls = Vec::new();
    for path in manifest_files() {
        let file = shown(&path);
        let text = read(&path);
        calls.extend(calls_in_shell_text(&file, &text, extension(&path) == "md"));

        if matches!(extension(&path), "yaml" | "yml") {
            for doc in yaml_documents(&path) {
                if let Some(services) = doc.get("services").and_then(|s| s.as_mapping()) {
                    // The services built from the sweep images; the NATS nodes run nats-server.
                    let sweep_services = services.values().filter(|service| {
                        service.get("build").is_some()
                            || service
                                .get("image")
                                .is_some_and(|image| yaml_str(image).starts_with("sweep:"))
                    });
                    for service in sweep_services {
                        if let Some(command) = service.get("command") {
                            calls.push(SweepCall {
                                file: file.clone(),
                                args: yaml_strings(command),
                            });
                        }
                    }
                }
                let containers = yaml_at(&doc, &["spec", "template", "spec", "containers"]);
                for container in containers
                    .and_then(|c| c.as_sequence())
                    .into_iter()
                    .flatten()
                {
                    if let Some(args) = container.get("args") {
                        calls.push(SweepCall {
                            file: file.clone(),
                            args: yaml_strings(args),
                        });
                    }
                }
            }
        }

        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("Dockerfile") && !name.ends_with(".dockerignore") {
            for line in text.lines().filter(|l| l.starts_with("CMD ")) {
                let args: Vec<String> = serde_json::from_str(&line["CMD ".len()..])
                    .unwrap_or_else(|e| panic!("{file}: CMD is not a JSON list: {e}"));
                calls.push(SweepCall {
                    file: file.clone(),
                    args,
                });
            }
        }
    }
    calls
}

// ---------------------------------------------------------------------------------------------
// Lint tests
// ---------------------------------------------------------------------------------------------

#[test]
fn every_yaml_and_json_manifest_parses() {
    let mut parsed = Vec::new();
    for path in manifest_files() {
        match extension(&path) {
            "yaml" | "yml" => {
                let documents = yaml_documents(&path);
                assert!(
                    !documents.is_empty(),
                    "{} holds no YAML document",
                    shown(&path)
                );
                parsed.push(shown(&path));
            }
            "json" => {
                serde_json::from_str::<serde_json::Value>(&read(&path))
                    .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", shown(&path)));
                parsed.push(shown(&path));
            }
            _ => {}
        }
    }

    for expected in [
        "deploy/compose/compose.yaml",
        "deploy/k8s/worker-deployment.yaml",
        "deploy/k8s/worker-scaledobject.yaml",
        "deploy/k8s/nats-values.yaml",
    ] {
        assert!(
            parsed.iter().any(|p| p == expected),
            "{expected} was not parsed"
        );
    }
}

#[test]
fn kubernetes_manifests_are_objects_with_kind_and_name() {
    for path in manifest_files() {
        let in_k8s = path.starts_with(deploy_dir().join("k8s"));
        // The Helm values file feeds a chart; it is not an object itself.
        if !in_k8s || extension(&path) != "yaml" || path.ends_with("nats-values.yaml") {
            continue;
        }
        for doc in yaml_documents(&path) {
            for key in [&["apiVersion"][..], &["kind"], &["metadata", "name"]] {
                assert!(
                    yaml_at(&doc, key).is_some(),
                    "{}: a document lacks {}",
                    shown(&path),
                    key.join(".")
                );
            }
        }
    }
}

#[test]
fn nats_configs_pass_the_servers_own_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = [4222, 6222, 8222];
    let mut env = node_env("nats-1", ports, [6222, 6223, 6224], &dir.path().join("js"));

    nats_server_check(&deploy_dir().join("nats/nats-server.conf"), &env);

    let (ca, cert, key) = make_certificates(dir.path());
    env.push(("NATS_TLS_CA".into(), ca.display().to_string()));
    env.push(("NATS_TLS_CERT".into(), cert.display().to_string()));
    env.push(("NATS_TLS_KEY".into(), key.display().to_string()));
    nats_server_check(&deploy_dir().join("nats/nats-server-tls.conf"), &env);
}

#[test]
fn manifest_commands_use_real_subcommands_and_flags() {
    let commands = subcommands();
    let mut flags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let calls = sweep_calls();

    for call in &calls {
        let Some(command) = call.args.first() else {
            continue;
        };
        if command.starts_with("--") {
            // `sweep --help`, `sweep --version`: global flags.
            let global = flags.entry(String::new()).or_insert_with(flags_of_global);
            assert!(
                global.contains(command),
                "{}: sweep has no flag {command}",
                call.file
            );
            continue;
        }
        assert!(
            commands.contains(command),
            "{}: `sweep {}` names no subcommand; sweep has {commands:?}",
            call.file,
            call.args.join(" ")
        );
        let known = flags
            .entry(command.clone())
            .or_insert_with(|| flags_of(command));
        for arg in call.args.iter().filter(|a| a.starts_with("--")) {
            let flag = arg.split('=').next().unwrap_or(arg);
            assert!(
                known.contains(flag),
                "{}: `sweep {command}` has no flag {flag}",
                call.file
            );
        }
    }

    // The worker is started from every deployment kind.
    for file in [
        "deploy/compose/compose.yaml",
        "deploy/k8s/worker-deployment.yaml",
        "deploy/systemd/sweep-worker@.service",
    ] {
        assert!(
            calls
                .iter()
                .any(|c| c.file == file && c.args.first().map(String::as_str) == Some("worker")),
            "{file} starts no `sweep worker`"
        );
    }
}

fn flags_of_global() -> BTreeSet<String> {
    let help = help_text(&[]);
    help.split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.trim_end_matches(',').to_string())
        .collect()
}

#[test]
fn binary_named_by_entrypoints_and_units_is_the_built_one() {
    let binary = sweep_bin()
        .file_name()
        .and_then(|n| n.to_str())
        .expect("binary name")
        .to_string();

    for name in ["Dockerfile.cpu", "Dockerfile.cuda"] {
        let path = deploy_dir().join("compose").join(name);
        let text = read(&path);
        let entrypoint = text
            .lines()
            .find(|l| l.starts_with("ENTRYPOINT "))
            .unwrap_or_else(|| panic!("{} has no ENTRYPOINT", shown(&path)));
        let words: Vec<String> = serde_json::from_str(&entrypoint["ENTRYPOINT ".len()..])
            .unwrap_or_else(|e| panic!("{}: ENTRYPOINT is not a JSON list: {e}", shown(&path)));
        assert_eq!(words.last(), Some(&binary), "{}: entrypoint", shown(&path));
        let copied = format!("/usr/local/bin/{binary}");
        assert!(
            text.contains(&copied),
            "{} does not install {copied}",
            shown(&path)
        );
        assert!(
            text.contains(&format!("--bin {binary}")),
            "{} does not build the {binary} binary",
            shown(&path)
        );
    }

    let unit = read(&deploy_dir().join("systemd/sweep-worker@.service"));
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart");
    assert!(
        exec.split_whitespace()
            .next()
            .unwrap_or("")
            .ends_with(&format!("/{binary}")),
        "ExecStart runs {exec}, not {binary}"
    );
}

#[test]
fn manifest_environment_variables_exist_in_the_code() {
    let sources = crate_sources();
    let mut seen = BTreeSet::new();

    for path in manifest_files() {
        for var in upper_words(&read(&path), "SWEEP_") {
            assert!(
                sources.contains(&format!("\"{var}\"")),
                "{} sets {var}, which no crate reads",
                shown(&path)
            );
            seen.insert(var);
        }
    }

    // The variables a worker needs appear in every kind of deployment.
    for var in [
        "SWEEP_NATS_URL",
        "SWEEP_NATS_USER",
        "SWEEP_NATS_PASSWORD",
        "SWEEP_DEVICE",
    ] {
        assert!(seen.contains(var), "no manifest sets {var}");
    }
}

#[test]
fn nats_variables_are_set_wherever_the_servers_run() {
    let conf_vars = |names: &[&str]| -> BTreeSet<String> {
        names
            .iter()
            .flat_map(|n| upper_words(&read(&deploy_dir().join("nats").join(n)), "NATS_"))
            .filter(|v| !v.starts_with("NATS_TLS_"))
            .collect()
    };
    let server_vars = conf_vars(&["nats-server.conf", "node.conf", "auth.conf"]);
    let auth_vars = conf_vars(&["auth.conf"]);

    // Compose: every NATS node sets every variable the configuration reads.
    let compose = &yaml_documents(&deploy_dir().join("compose/compose.yaml"))[0];
    for node in ["nats-1", "nats-2", "nats-3"] {
        let env = yaml_at(compose, &["services", node, "environment"])
            .unwrap_or_else(|| panic!("compose service {node} has no environment"));
        let set = env_names(env);
        for var in &server_vars {
            assert!(
                set.contains(var),
                "compose service {node} does not set {var}"
            );
        }
        let command = yaml_strings(yaml_at(compose, &["services", node, "command"]).unwrap());
        assert!(
            command.iter().any(|a| a.ends_with("/nats-server.conf")),
            "compose service {node} does not run deploy/nats/nats-server.conf"
        );
    }

    // systemd: the environment file of sweep-nats.service.
    let env_file = read(&deploy_dir().join("systemd/nats.env.example"));
    let set: BTreeSet<&str> = env_file
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    for var in &server_vars {
        assert!(
            set.contains(var.as_str()),
            "systemd/nats.env.example does not set {var}"
        );
    }

    // Helm: the chart writes its own server settings and includes auth.conf, whose password
    // variables come from the Secret.
    let values = &yaml_documents(&deploy_dir().join("k8s/nats-values.yaml"))[0];
    let env = yaml_at(values, &["container", "env"]).expect("nats-values.yaml sets container.env");
    let set = env_names(env);
    for var in &auth_vars {
        assert!(set.contains(var), "nats-values.yaml does not set {var}");
    }
}

#[test]
fn files_named_by_manifests_exist() {
    let root = repo_root();
    let mut missing = Vec::new();
    let mut check = |file: &str, path: PathBuf| {
        if !path.exists() {
            missing.push(format!("{file} names {}", shown(&path)));
        }
    };

    for path in manifest_files() {
        let file = shown(&path);
        let text = read(&path);

        // Repository paths in prose, comments and commands.
        for word in text.split(|c: char| c.is_whitespace() || "`'\"(),=[]<>|*".contains(c)) {
            let word = word.trim_end_matches(['.', ':', ';']);
            let is_repo_path = ["deploy/", "docs/", "sweeps/", "scripts/", "tests/"]
                .iter()
                .any(|p| word.starts_with(p));
            if is_repo_path && !word.contains('$') {
                check(&file, root.join(word));
            }
        }

        // Dockerfiles: COPY sources, relative to the build context (the repository root).
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("Dockerfile") && !name.ends_with(".dockerignore") {
            for line in text
                .lines()
                .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
            {
                let words: Vec<&str> = line.split_whitespace().collect();
                for source in &words[1..words.len() - 1] {
                    check(&file, root.join(source));
                }
            }
        }

        // `helm --set-file key=path`.
        for (i, _) in text.match_indices("--set-file") {
            let rest = &text[i + "--set-file".len()..];
            let word = shell_words(rest.lines().next().unwrap_or(""));
            if let Some(path) = word.first().and_then(|w| w.split_once('=')).map(|(_, p)| p) {
                check(&file, root.join(path));
            }
        }
    }

    // Compose: build contexts and Dockerfiles, read-only bind mounts (the inputs), and files
    // inside mounted folders that commands name.
    let compose_dir = deploy_dir().join("compose");
    let compose = &yaml_documents(&compose_dir.join("compose.yaml"))[0];
    let services = compose["services"].as_mapping().expect("compose services");
    for (name, service) in services {
        let name = yaml_str(name);
        let file = format!("deploy/compose/compose.yaml service {name}");
        if let Some(build) = service.get("build") {
            let context = compose_dir.join(yaml_str(&build["context"]));
            check(&file, context.join(yaml_str(&build["dockerfile"])));
        }
        let mut mounts = BTreeMap::new();
        for volume in service.get("volumes").map(yaml_strings).unwrap_or_default() {
            let parts: Vec<&str> = volume.split(':').collect();
            let host = parts[0];
            if host.starts_with('.') || host.starts_with('/') {
                if parts.get(2) == Some(&"ro") {
                    check(&file, compose_dir.join(host));
                }
                mounts.insert(parts[1].to_string(), compose_dir.join(host));
            }
        }
        for arg in service.get("command").map(yaml_strings).unwrap_or_default() {
            for (target, host) in &mounts {
                if let Some(inner) = arg.strip_prefix(&format!("{target}/")) {
                    if host.exists() {
                        check(&file, host.join(inner));
                    }
                }
            }
        }
    }

    assert!(missing.is_empty(), "missing files:\n{}", missing.join("\n"));
}

#[test]
fn deploy_permissions_follow_the_protocol() {
    let (account, users) = deploy_users();
    let coordinator = users.get("coordinator").expect("a coordinator user");
    let worker = users.get("worker").expect("a worker user");
    assert_eq!(
        users.len(),
        2,
        "exactly the coordinator and worker users: {users:?}"
    );

    let sweep = "demo";
    let trial = shared::trial::TrialId("0123456789abcdef".into());
    let trials = protocol::TRIALS_STREAM;
    let consumer = protocol::TRIALS_CONSUMER;
    let results = protocol::RESULTS_STREAM;
    let state = protocol::STATE_BUCKET;
    let datasets = protocol::DATASETS_BUCKET;
    let weights = protocol::WEIGHTS_BUCKET;

    // What a worker does.
    let worker_needs = [
        format!("$JS.API.STREAM.INFO.{trials}"),
        format!("$JS.API.CONSUMER.INFO.{trials}.{consumer}"),
        format!("$JS.API.CONSUMER.CREATE.{trials}.{consumer}"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{trials}.{consumer}"),
        format!("$JS.ACK.{trials}.{consumer}.1.42.42.1764786000000000000.0"),
        protocol::results_subject(sweep),
        protocol::progress_subject(sweep),
        format!("$JS.API.STREAM.INFO.KV_{state}"),
        format!(
            "$JS.API.DIRECT.GET.KV_{state}.$KV.{state}.{}",
            protocol::manifest_key(sweep)
        ),
        format!("$JS.API.STREAM.INFO.OBJ_{datasets}"),
        format!("$JS.API.DIRECT.GET.OBJ_{datasets}.$O.{datasets}.M.ZGF0YXNldA=="),
        format!("$JS.API.CONSUMER.CREATE.OBJ_{datasets}.reader.$O.{datasets}.C.nuid"),
        format!("$O.{weights}.C.nuid"),
        format!("$O.{weights}.M.d2VpZ2h0cw=="),
    ];
    for subject in &worker_needs {
        assert!(
            worker.can_publish(subject),
            "the worker user may not publish {subject}"
        );
        assert!(
            coordinator.can_publish(subject),
            "the coordinator may not publish {subject}"
        );
    }
    assert!(worker.can_subscribe("_INBOX.abc.def"));

    // What only the coordinator does.
    let coordinator_only = [
        protocol::trials_subject(sweep),
        format!("$KV.{state}.{}", protocol::trial_key(sweep, &trial)),
        format!("$KV.{state}.{}", protocol::manifest_key(sweep)),
        format!("$O.{datasets}.C.nuid"),
        format!("$JS.API.STREAM.CREATE.{trials}"),
        format!("$JS.API.STREAM.UPDATE.{trials}"),
        format!("$JS.API.STREAM.PURGE.{trials}"),
        format!("$JS.API.CONSUMER.CREATE.{trials}.other"),
        format!("$JS.API.CONSUMER.DELETE.{trials}.{consumer}"),
        format!(
            "$JS.API.CONSUMER.MSG.NEXT.{results}.{}",
            protocol::results_consumer(sweep)
        ),
    ];
    for subject in &coordinator_only {
        assert!(
            coordinator.can_publish(subject),
            "the coordinator may not publish {subject}"
        );
        assert!(
            !worker.can_publish(subject),
            "the worker user may publish {subject}"
        );
    }
    for stream in [trials, results].into_iter().map(String::from).chain([
        format!("KV_{state}"),
        format!("OBJ_{datasets}"),
        format!("OBJ_{weights}"),
    ]) {
        let delete = format!("$JS.API.STREAM.DELETE.{stream}");
        assert!(
            !worker.can_publish(&delete),
            "the worker user may delete {stream}"
        );
    }
    assert!(coordinator.can_subscribe(&protocol::progress_subject(sweep)));
    assert!(coordinator.can_subscribe("_INBOX.abc.def"));

    // Every stream, bucket and subject a permission names is one the protocol has: a renamed
    // stream cannot leave a stale grant behind.
    let known = [
        trials.to_string(),
        results.to_string(),
        format!("KV_{state}"),
        format!("OBJ_{datasets}"),
        format!("OBJ_{weights}"),
        state.to_string(),
        datasets.to_string(),
        weights.to_string(),
    ];
    let prefixes = [
        protocol::TRIALS_SUBJECT_PREFIX,
        protocol::RESULTS_SUBJECT_PREFIX,
        protocol::PROGRESS_SUBJECT_PREFIX,
    ];
    for pattern in coordinator.patterns().chain(worker.patterns()) {
        if let Some(name) = named_stream(pattern) {
            assert!(
                known.iter().any(|k| k == name),
                "auth.conf names `{name}` in {pattern}, which is no stream or bucket of the protocol"
            );
        }
        if let Some(rest) = pattern.strip_prefix("sweep.") {
            let kind = rest.split('.').next().unwrap_or("");
            assert!(
                kind == ">" || prefixes.contains(&format!("sweep.{kind}").as_str()),
                "auth.conf grants {pattern}, a subject the protocol does not use"
            );
        }
    }

    // The autoscaler watches the protocol's trial consumer in the deploy account.
    let scaled = &yaml_documents(&deploy_dir().join("k8s/worker-scaledobject.yaml"))[0];
    let trigger = &yaml_at(scaled, &["spec", "triggers"]).expect("triggers")[0];
    assert_eq!(yaml_str(&trigger["type"]), "nats-jetstream");
    assert_eq!(yaml_str(&trigger["metadata"]["account"]), account);
    assert_eq!(yaml_str(&trigger["metadata"]["stream"]), trials);
    assert_eq!(yaml_str(&trigger["metadata"]["consumer"]), consumer);
}

#[test]
fn gpu_workers_reserve_one_gpu_each() {
    let compose = &yaml_documents(&deploy_dir().join("compose/compose.yaml"))[0];
    let services = compose["services"].as_mapping().expect("compose services");
    let mut gpu_workers = 0;
    for (name, service) in services {
        let name = yaml_str(name);
        let Some(devices) = yaml_at(service, &["deploy", "resources", "reservations", "devices"])
        else {
            continue;
        };
        let device = &devices[0];
        assert_eq!(yaml_str(&device["driver"]), "nvidia", "{name}");
        assert_eq!(yaml_strings(&device["capabilities"]), ["gpu"], "{name}");
        assert_eq!(
            yaml_strings(&device["device_ids"]).len(),
            1,
            "{name}: one GPU"
        );
        let env = &service["environment"];
        assert_eq!(yaml_str(&env["SWEEP_DEVICE"]), "cuda:0", "{name}");
        gpu_workers += 1;
    }
    assert!(
        gpu_workers >= 2,
        "the compose file has {gpu_workers} GPU workers"
    );

    let deployment = &yaml_documents(&deploy_dir().join("k8s/worker-deployment.yaml"))[0];
    let container =
        &yaml_at(deployment, &["spec", "template", "spec", "containers"]).expect("containers")[0];
    let gpus = yaml_at(container, &["resources", "limits", "nvidia.com/gpu"]).expect("GPU limit");
    assert_eq!(yaml_str(gpus), "1");

    // The password comes from the Secret the example defines, under a key it has.
    let secret = &yaml_documents(&deploy_dir().join("k8s/sweep-secret.example.yaml"))[0];
    let secret_name = yaml_str(&secret["metadata"]["name"]);
    let env = container["env"].as_sequence().expect("env list");
    let password = env
        .iter()
        .find(|e| yaml_str(&e["name"]) == "SWEEP_NATS_PASSWORD")
        .expect("SWEEP_NATS_PASSWORD is set");
    let reference = yaml_at(password, &["valueFrom", "secretKeyRef"]).expect("from a Secret");
    assert_eq!(yaml_str(&reference["name"]), secret_name);
    let key = yaml_str(&reference["key"]);
    assert!(
        yaml_at(secret, &["stringData", &key]).is_some(),
        "the Secret has no key {key}"
    );

    let unit = read(&deploy_dir().join("systemd/sweep-worker@.service"));
    assert!(unit.contains("Environment=CUDA_VISIBLE_DEVICES=%i"));
}

// ---------------------------------------------------------------------------------------------
// nats-server from the deploy configuration
// ---------------------------------------------------------------------------------------------

/// `n` free loopback ports, all held until every one is picked so none repeats.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("binding a free port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("local address").port())
}

/// The environment that `deploy/nats/*.conf` reads, for one node.
fn node_env(
    name: &str,
    [client, cluster, monitor]: [u16; 3],
    routes: [u16; 3],
    store: &Path,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("NATS_SERVER_NAME".to_string(), name.to_string()),
        ("NATS_CLIENT_PORT".to_string(), client.to_string()),
        ("NATS_CLUSTER_PORT".to_string(), cluster.to_string()),
        ("NATS_MONITOR_PORT".to_string(), monitor.to_string()),
        ("NATS_STORE_DIR".to_string(), store.display().to_string()),
        (
            "NATS_COORDINATOR_PASSWORD".to_string(),
            COORDINATOR_PASSWORD.to_string(),
        ),
        (
            "NATS_WORKER_PASSWORD".to_string(),
            WORKER_PASSWORD.to_string(),
        ),
    ];
    for (i, port) in routes.iter().enumerate() {
        env.push((
            format!("NATS_ROUTE_{}", i + 1),
            format!("nats-route://127.0.0.1:{port}"),
        ));
    }
    env
}

/// Runs `nats-server -t -c FILE`, which loads the configuration (variables, includes, users,
/// certificates) and exits.
fn nats_server_check(config: &Path, env: &[(String, String)]) {
    let output = Command::new(nats_server_bin())
        .args(["-t", "-c"])
        .arg(config)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; set SWEEP_NATS_SERVER",
                nats_server_bin().display()
            )
        });
    assert!(
        output.status.success(),
        "nats-server rejects {}:\n{}{}",
        shown(config),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA and a certificate for 127.0.0.1/localhost signed by it, made with openssl.
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl makes the test certificates; install it");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let run = |line: &str| openssl(&line.split_whitespace().collect::<Vec<_>>());
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

    run(&format!(
        "req -x509 {ec} -days 1 -subj /CN=sweep-test-ca -keyout ca.key -out ca.pem"
    ));
    run(&format!(
        "req {ec} -subj /CN=localhost -keyout node.key -out node.csr"
    ));
    fs::write(
        dir.join("node.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .expect("writing the extension file");
    run(
        "x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
         -extfile node.ext -out node.pem",
    );
    (
        dir.join("ca.pem"),
        dir.join("node.pem"),
        dir.join("node.key"),
    )
}

/// `GET path` on a loopback port: the status code and body, or `None` when nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// One nats-server process started from a deploy configuration; killed when dropped.
struct NatsNode {
    name: String,
    client_port: u16,
    monitor_port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl NatsNode {
    fn start(name: &str, config: &Path, env: &[(String, String)], dir: &Path) -> NatsNode {
        let var = |key: &str| {
            env.iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.parse::<u16>().expect("a port"))
                .expect("port variable")
        };
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(nats_server_bin())
            .arg("-c")
            .arg(config)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("creating the server log"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; set SWEEP_NATS_SERVER",
                    nats_server_bin().display()
                )
            });
        NatsNode {
            name: name.to_string(),
            client_port: var("NATS_CLIENT_PORT"),
            monitor_port: var("NATS_MONITOR_PORT"),
            log,
            child: Some(child),
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    /// Waits until the node reports JetStream healthy (for a cluster node: joined, with a meta
    /// leader, and current).
    fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((200, _)) = http_get(self.monitor_port, "/healthz?js-enabled-only=true") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} is not healthy after {timeout:?}; its log:\n{}",
                self.name,
                fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the node sees a JetStream meta leader in a cluster of `size` nodes: before
    /// that, API requests (creating a stream) time out.
    fn wait_meta_leader(&self, size: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let meta = http_get(self.monitor_port, "/jsz")
                .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
                .map(|jsz| jsz["meta_cluster"].clone())
                .unwrap_or_default();
            let has_leader = meta["leader"].as_str().is_some_and(|l| !l.is_empty());
            if has_leader && meta["cluster_size"].as_u64() == Some(size) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} has no JetStream meta leader after {timeout:?}: {meta}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: the node vanishes without a goodbye, as a crashed machine would.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The three-node cluster of `deploy/nats/nats-server.conf` on loopback.
struct Cluster {
    nodes: Vec<NatsNode>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: [u16; 9] = free_ports();
        let routes = [ports[1], ports[4], ports[7]];
        let config = deploy_dir().join("nats/nats-server.conf");
        let nodes: Vec<NatsNode> = (0..3)
            .map(|i| {
                let name = format!("nats-{}", i + 1);
                let own = [ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]];
                let env = node_env(&name, own, routes, &dir.path().join(&name));
                NatsNode::start(&name, &config, &env, dir.path())
            })
            .collect();
        for node in &nodes {
            node.wait_healthy(Duration::from_secs(30));
            node.wait_meta_leader(3, Duration::from_secs(30));
        }
        Cluster { nodes, _dir: dir }
    }

    /// Every node's client URL, comma separated (the form `--nats` takes).
    fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsNode::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A standalone node with the deploy users and permissions (node.conf and auth.conf, no
/// cluster block).
fn start_standalone(dir: &Path) -> NatsNode {
    let config = dir.join("standalone.conf");
    // nats-server resolves an include against the including file's folder, even when the
    // path is absolute: climb from the temp folder to the root first.
    let node_conf = deploy_dir().join("nats/node.conf");
    let up = "../".repeat(dir.components().count() - 1);
    let relative = format!(
        "{up}{}",
        node_conf.display().to_string().trim_start_matches('/')
    );
    fs::write(&config, format!("include \"{relative}\"\n")).expect("writing config");
    let ports: [u16; 3] = free_ports();
    let env = node_env("standalone", ports, [ports[1]; 3], &dir.join("js"));
    let node = NatsNode::start("standalone", &config, &env, dir);
    node.wait_healthy(Duration::from_secs(15));
    node
}

/// Connects as a deploy user to a comma-separated list of servers.
async fn connect_as(urls: &str, user: &str, password: &str) -> async_nats::Client {
    let addrs: Vec<async_nats::ServerAddr> = urls
        .split(',')
        .map(|url| url.parse().expect("a server URL"))
        .collect();
    async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .connect(addrs)
        .await
        .unwrap_or_else(|e| panic!("connecting to {urls} as {user}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Server tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_user_cannot_publish_trials_but_coordinator_can() {
    use async_nats::jetstream::{self, consumer, stream};
    use futures::StreamExt;

    let dir = tempfile::tempdir().expect("temp dir");
    let node = start_standalone(dir.path());
    let url = node.url();
    let subject = protocol::trials_subject("perm");

    // The coordinator sets up the trial queue as the protocol describes and queues a trial.
    let coordinator = connect_as(&url, "coordinator", COORDINATOR_PASSWORD).await;
    let cjs = jetstream::new(coordinator.clone());
    let trials = cjs
        .create_stream(stream::Config {
            name: protocol::TRIALS_STREAM.into(),
            subjects: vec![format!("{}.>", protocol::TRIALS_SUBJECT_PREFIX)],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .expect("the coordinator creates the trial stream");
    trials
        .create_consumer(consumer::pull::Config {
            durable_name: Some(protocol::TRIALS_CONSUMER.into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("the coordinator creates the worker consumer");
    cjs.create_stream(stream::Config {
        name: protocol::RESULTS_STREAM.into(),
        subjects: vec![format!("{}.>", protocol::RESULTS_SUBJECT_PREFIX)],
        ..Default::default()
    })
    .await
    .expect("the coordinator creates the result stream");
    let ack = cjs
        .publish(subject.clone(), "trial from the coordinator".into())
        .await
        .expect("publishing")
        .await
        .expect("the coordinator's trial is stored");
    assert_eq!(ack.stream, protocol::TRIALS_STREAM);

    // The worker's forged trial is refused by the server, which says so.
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let worker =
        async_nats::ConnectOptions::with_user_and_password("worker".into(), WORKER_PASSWORD.into())
            .event_callback(move |event| {
                let events_tx = events_tx.clone();
                async move {
                    let _ = events_tx.send(event);
                }
            })
            .connect(&url)
            .await
            .expect("the worker user connects");
    let mut wjs = jetstream::new(worker.clone());
    wjs.set_timeout(Duration::from_secs(2));
    let forged = match wjs.publish(subject.clone(), "forged trial".into()).await {
        Ok(ack) => ack.await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(forged.is_err(), "the worker's trial was acknowledged");
    let violation = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = events.recv().await {
            if let async_nats::Event::ServerError(async_nats::ServerError::Other(text)) = event {
                return text;
            }
        }
        panic!("the event channel closed");
    })
    .await
    .expect("the server reports a permissions violation");
    let violation = violation.to_lowercase();
    assert!(
        violation.contains("permissions violation") && violation.contains(&subject),
        "unexpected server error: {violation}"
    );

    // Nor may it delete the queue.
    assert!(wjs.delete_stream(protocol::TRIALS_STREAM).await.is_err());
    let mut trials = cjs
        .get_stream(protocol::TRIALS_STREAM)
        .await
        .expect("stream still there");
    assert_eq!(trials.info().await.expect("stream info").state.messages, 1);

    // It can do its own job: take the coordinator's trial, acknowledge it, publish a result.
    let queue: consumer::PullConsumer = wjs
        .get_stream(protocol::TRIALS_STREAM)
        .await
        .expect("the worker looks up the trial stream")
        .get_consumer(protocol::TRIALS_CONSUMER)
        .await
        .expect("the worker looks up its consumer");
    let mut batch = queue
        .fetch()
        .max_messages(1)
        .messages()
        .await
        .expect("the worker pulls");
    let message = batch
        .next()
        .await
        .expect("a trial is delivered")
        .expect("delivery");
    assert_eq!(&message.payload[..], b"trial from the coordinator");
    message.double_ack().await.expect("the worker acknowledges");
    assert_eq!(trials.info().await.expect("stream info").state.messages, 0);

    let ack = wjs
        .publish(protocol::results_subject("perm"), "result".into())
        .await
        .expect("publishing")
        .await
        .expect("the worker's result is stored");
    assert_eq!(ack.stream, protocol::RESULTS_STREAM);
}

/// Trial ids of a leaderboard printed as JSON, however it nests its rows: every string under a
/// `trial_id` key, except in rows of another `kind` (the baselines).
fn leaderboard_trial_ids(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            let is_trial = map.get("kind").is_none_or(|kind| kind == "trial");
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("trial_id", serde_json::Value::String(id)) if is_trial => out.push(id.clone()),
                    _ => leaderboard_trial_ids(item, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                leaderboard_trial_ids(item, out);
            }
        }
        _ => {}
    }
}

/// A `sweep worker` process of the cluster test; killed when dropped.
struct WorkerProcess(Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_sweep_completes_every_trial_once_when_a_node_dies() {
    use async_nats::jetstream;
    use futures::StreamExt;

    // Eight small DRY trials on the built-in synthetic data: long enough that the node dies
    // while trials are still queued and running.
    let out = tempfile::tempdir().expect("temp dir");
    let spec = out.path().join("cluster.yaml");
    fs::write(
        &spec,
        "name: deploy-cluster\n\
         data:\n  categories: [DRY]\n\
         parameters:\n  hidden_size: 8\n  n_layers: 1\n  batch_size: 64\n  epochs: 20\n\
         \x20 seed: [1, 2, 3, 4, 5, 6, 7, 8]\n",
    )
    .expect("writing the spec");
    let max_trials = 8;
    let mut cluster = Cluster::start();
    let urls = cluster.urls();

    // The trials the launch will run: the plan, cut at --max-trials.
    let plan = Command::new(sweep_bin())
        .args(["plan", "--json"])
        .arg(&spec)
        .output()
        .expect("running sweep plan");
    assert!(
        plan.status.success(),
        "sweep plan: {}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let planned = String::from_utf8_lossy(&plan.stdout).lines().count();
    let expected = planned.min(max_trials);
    assert!(expected >= 2, "the spec plans {planned} trials");

    // The coordinator, as the deploy coordinator user, with the streams on all three nodes.
    let launch = tokio::process::Command::new(sweep_bin())
        .arg("launch")
        .arg(&spec)
        .args([
            "--max-trials",
            &max_trials.to_string(),
            "--json",
            "--nats",
            &urls,
            "--out",
        ])
        .arg(out.path())
        .env("SWEEP_NATS_USER", "coordinator")
        .env("SWEEP_NATS_PASSWORD", COORDINATOR_PASSWORD)
        .env("SWEEP_NATS_REPLICAS", "3")
        .env_remove("SWEEP_NATS_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting sweep launch");

    // Workers cannot create streams; they start once the coordinator has.
    let observer = connect_as(&urls, "coordinator", COORDINATOR_PASSWORD).await;
    let js = jetstream::new(observer.clone());
    let mut results = observer
        .subscribe(format!("{}.>", protocol::RESULTS_SUBJECT_PREFIX))
        .await
        .expect("subscribing to results");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut launch = launch;
    while let Err(err) = js.get_stream(protocol::TRIALS_STREAM).await {
        if let Some(status) = launch.try_wait().expect("polling sweep launch") {
            let output = launch.wait_with_output().await.expect("launch output");
            panic!(
                "sweep launch exited ({status}) before creating the trial stream:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        assert!(
            Instant::now() < deadline,
            "the coordinator never created the trial stream: {err}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let caches = [
        tempfile::tempdir().expect("temp dir"),
        tempfile::tempdir().expect("temp dir"),
    ];
    let _workers: Vec<WorkerProcess> = caches
        .iter()
        .enumerate()
        .map(|(i, cache)| {
            let child = Command::new(sweep_bin())
                .args([
                    "worker",
                    "--nats",
                    &urls,
                    "--name",
                    &format!("cluster-w{}", i + 1),
                ])
                .arg("--cache-dir")
                .arg(cache.path())
                .env("SWEEP_NATS_USER", "worker")
                .env("SWEEP_NATS_PASSWORD", WORKER_PASSWORD)
                .env("SWEEP_NATS_ACK_WAIT_MS", "5000")
                .env_remove("SWEEP_NATS_TOKEN")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting sweep worker");
            WorkerProcess(child)
        })
        .collect();

    // Mid-sweep (after the first result), kill the node that leads the trial stream.
    tokio::time::timeout(Duration::from_secs(300), results.next())
        .await
        .expect("no result within 5 minutes")
        .expect("results subscription open");
    let info = js
        .get_stream(protocol::TRIALS_STREAM)
        .await
        .expect("trial stream")
        .info()
        .await
        .expect("trial stream info")
        .clone();
    // Trials still queued or running (a work queue keeps a trial until it is acknowledged).
    assert!(
        info.state.messages > 0,
        "every trial was done before the node could be killed; make the trials longer"
    );
    let leader = info
        .cluster
        .and_then(|c| c.leader)
        .expect("the trial stream has a leader");
    let victim = cluster
        .nodes
        .iter_mut()
        .find(|n| n.name == leader)
        .unwrap_or_else(|| panic!("no node is named {leader}"));
    victim.kill();

    // The sweep completes on the two remaining nodes, every trial in the leaderboard once.
    let output = tokio::time::timeout(Duration::from_secs(600), launch.wait_with_output())
        .await
        .expect("the sweep did not finish within 10 minutes of losing a node")
        .expect("waiting for sweep launch");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "sweep launch failed after losing {leader}:\n{stderr}"
    );
    let leaderboard: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("the leaderboard is not JSON ({e}):\n{stderr}"));
    let mut ids = Vec::new();
    leaderboard_trial_ids(&leaderboard, &mut ids);
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a trial is listed twice: {ids:?}");
    assert_eq!(ids.len(), expected, "trials in the leaderboard: {ids:?}");

    // Every stream and bucket has its three replicas.
    for stream in [
        protocol::TRIALS_STREAM.to_string(),
        protocol::RESULTS_STREAM.to_string(),
        format!("KV_{}", protocol::STATE_BUCKET),
        format!("OBJ_{}", protocol::DATASETS_BUCKET),
        format!("OBJ_{}", protocol::WEIGHTS_BUCKET),
    ] {
        // The test's own client may have been connected to the killed node, and the cluster
        // may still be electing leaders: retry until it answers.
        let deadline = Instant::now() + Duration::from_secs(60);
        let replicas = loop {
            let answer = match js.get_stream(&stream).await {
                Ok(mut handle) => handle
                    .info()
                    .await
                    .map(|info| info.config.num_replicas)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match answer {
                Ok(replicas) => break replicas,
                Err(e) => {
                    assert!(Instant::now() < deadline, "{stream}: no stream info: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        assert_eq!(replicas, 3, "{stream} has {replicas} replicas");
    }
}

#[cfg(test)]
mod parser_tests {
    use super::*;

    #[test]
    fn subject_patterns_match_like_the_server() {
        assert!(subject_matches("sweep.>", "sweep.trials.a"));
        assert!(!subject_matches("sweep.>", "sweep"));
        assert!(subject_matches(
            "$JS.API.STREAM.INFO.*",
            "$JS.API.STREAM.INFO.X"
        ));
        assert!(!subject_matches(
            "$JS.API.STREAM.INFO.*",
            "$JS.API.STREAM.INFO.X.Y"
        ));
        assert!(!subject_matches("a.b", "a.b.c"));
    }

    #[test]
    fn conf_parser_resolves_top_level_variables() {
        let conf = parse_conf(
            "P = { publish = { allow = [\"a.>\" # note\n \"b\"] } }\n\
             accounts { A { users = [ {user: u, password: $ENV_PW, permissions: $P} ] } }",
        );
        let user = &conf
            .get("accounts")
            .unwrap()
            .get("A")
            .unwrap()
            .get("users")
            .unwrap();
        let Conf::List(users) = user else { panic!() };
        let allow = users[0]
            .get("permissions")
            .unwrap()
            .get("publish")
            .unwrap()
            .get("allow");
        assert_eq!(allow.unwrap().strings(), ["a.>", "b"]);
        assert_eq!(users[0].get("password").unwrap().strings(), ["$ENV_PW"]);
    }

    #[test]
    fn shell_lines_yield_sweep_calls() {
        let calls = calls_in_shell_text(
            "x",
            "  $ sweep worker --nats nats://a:4222 \\\n   --slots 2\n\
             cargo run --bin sweep -- launch s.yaml --out runs\nthe sweep worker is ...\n\
             # sweep with Compose\n#   sweep plan s.yaml\n",
            false,
        );
        let args: Vec<_> = calls.iter().map(|c| c.args.join(" ")).collect();
        assert_eq!(
            args,
            [
                "worker --nats nats://a:4222 --slots 2",
                "launch s.yaml --out runs",
                "plan s.yaml"
            ]
        );

        let markdown = calls_in_shell_text("x", "sweep plan a\n```bash\nsweep plan b\n```\n", true);
        assert_eq!(markdown.len(), 1);
        assert_eq!(markdown[0].args, ["plan", "b"]);
    }
}
