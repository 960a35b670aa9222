//! `rzab serve` (a node serving external clients) and the client commands
//! `rzab get|put|delete --cluster FILE KEY [VALUE]`.

use crate::cli::{fail_config, load_cluster, stop_on_signals};
use clap::Args;
use rzab_client::blocking::Client;
use rzab_client::{ClientConfig, Error};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The cluster file (TOML) shared by every node; its [client] section
    /// and each node's `client` address configure the service.
    #[arg(long)]
    pub config: PathBuf,
    /// This node's id in the cluster file.
    #[arg(long)]
    pub id: u8,
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// The cluster file: the client tries its nodes' client addresses in turn.
    #[arg(long)]
    pub cluster: PathBuf,
    /// The shared secret (default: the file's client.token).
    #[arg(long)]
    pub token: Option<String>,
    /// Read linearizably (`get` only): after every write committed before it.
    #[arg(long)]
    pub sync: bool,
    pub key: String,
    /// The value (`put` only).
    pub value: Option<String>,
}

pub fn serve(args: ServeArgs) -> ExitCode {
    let file = match load_cluster(&args.config) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let stop = match stop_on_signals() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut stdout = std::io::stdout();
    match rzab_node::process::serve_node(&file, args.id, &mut stdout, &stop) {
        Ok(o) if o.errors.is_empty() => ExitCode::SUCCESS,
        Ok(o) => {
            eprintln!("rzab: error: {}", o.errors.join("; "));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("rzab: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Which client command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    Put,
    Delete,
}

pub fn run(verb: Verb, args: ClientArgs) -> ExitCode {
    let file = match load_cluster(&args.cluster) {
        Ok(f) => f,
        Err(code) => return code,
    };
    match (verb, &args.value) {
        (Verb::Put, None) => return fail_config("put needs a KEY and a VALUE"),
        (Verb::Get | Verb::Delete, Some(_)) => return fail_config("only put takes a VALUE"),
        _ => {}
    }
    if args.sync && verb != Verb::Get {
        return fail_config("--sync is for get");
    }
    let mut cfg = ClientConfig::new(file.client_addrs());
    cfg.token = args.token.or(file.client.token).map(String::into_bytes);
    cfg.max_inflight = 1;
    let client = match Client::connect(cfg) {
        Ok(c) => c,
        Err(e) => return failed(&e),
    };
    let key = args.key.as_bytes();
    let result = match verb {
        Verb::Get if args.sync => client.sync_get(key).map(show),
        Verb::Get => client.get(key).map(show),
        Verb::Put => client
            .put(key, args.value.unwrap_or_default().as_bytes())
            .map(|z| format!("ok zxid {z:#x}")),
        Verb::Delete => client.delete(key).map(|d| match d {
            Some(true) => "deleted".to_string(),
            Some(false) => "absent".to_string(),
            None => "deleted (or was absent)".to_string(),
        }),
    };
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e),
    }
}

fn show(v: Option<rzab_client::Versioned>) -> String {
    match v {
        Some(v) => String::from_utf8_lossy(&v.value).into_owned(),
        None => "(not found)".to_string(),
    }
}

fn failed(e: &Error) -> ExitCode {
    eprintln!("rzab: error: {e}");
    match e {
        Error::Invalid(_) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}
