//! `agledger`: a small stand-in for the AGLedger product, built as test
//! equipment for opshost's plugins (see ../README.md). One binary, the role
//! is argv[1].

mod apikeys;
mod config;
mod db;
mod healthcheck;
mod http;
mod migrations;
mod preflight;
mod routes;
mod seed;
mod vault;

use std::future::Future;
use std::process::ExitCode;

const USAGE: &str = "\
usage: agledger ROLE [ARGS]

roles:
  serve                  the API (0.0.0.0:$PORT, default 3000)
  worker                 the worker (0.0.0.0:$PORT, default 3001)
  migrate                apply pending migrations (exit 0 on success)
  preflight              check database, migrations and configuration
  rehash-api-keys        recompute every API key hash with API_KEY_SECRET
  generate-signing-key   print a new Ed25519 key (base64 PKCS#8 DER)
  healthcheck            GET /health on 127.0.0.1:$PORT, exit 0 iff 200
  seed --mandates N --entries-per-mandate M --api-keys K
                         create test data; prints platform-key=<key>
  version                print the version";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(role) = args.first().map(String::as_str) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let result = match role {
        "version" | "--version" => {
            println!("{}", config::version());
            Ok(())
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        "healthcheck" => return healthcheck::run(),
        "generate-signing-key" => vault::generate_signing_key().map(|key| println!("{key}")),
        "serve" => block_on(http::serve(config::Role::Api)),
        "worker" => block_on(http::serve(config::Role::Worker)),
        "migrate" => block_on(migrations::run_migrate()),
        "preflight" => block_on(preflight::run()),
        "rehash-api-keys" => block_on(apikeys::rehash_command()),
        "seed" => seed::parse_args(rest).and_then(|options| block_on(seed::run(options))),
        other => {
            eprintln!("agledger: unknown role {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("agledger {role}: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn block_on<F: Future<Output = Result<(), String>>>(future: F) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let result = runtime.block_on(future);
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// N bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).map_err(|e| format!("no randomness from the OS: {e}"))?;
    Ok(buf)
}
