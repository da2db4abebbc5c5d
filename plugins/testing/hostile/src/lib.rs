//! Hostile test plugin: each argument is an attack the host must deny or
//! stop. It requests a deliberately small set of grants; every attack
//! reaches past them. Denied calls propagate the host's error, so the run
//! fails with the host's message; probes of the sandbox (env, sockets,
//! ambient files) report what they saw.

use std::io::Write;

use opshost_sdk::{container, db, fs, http, invalid, progress, web, Report, Result};

opshost_sdk::manifest! {
    name: "hostile",
    vendor: "opshost-testing",
    description: "Tries to escape its grants",
    applies_to: "*",
    min_host: "0.1.0",
    requests: [
        ("fs=work:ro", "reads the work directory"),
        ("http=api:GET", "reads the API"),
        ("db=agledger:read", "reads the database"),
        ("container=agledger/api:logs", "reads the api's logs"),
    ],
}

struct Hostile;

fn get(api: &str, path: &str) -> Result<Report> {
    let r = web::get(api, path)?;
    Ok(
        Report::ok(format!("GET {path} -> {}", r.head.status))
            .fact("final path", r.head.final_path),
    )
}

impl opshost_sdk::Operation for Hostile {
    fn run(args: Vec<String>) -> Result<Report> {
        let attack = args.first().map(String::as_str).unwrap_or("");
        let arg = args.get(1).cloned().unwrap_or_default();
        match attack {
            "read" => {
                let data = fs::open("work")?.read(&arg)?;
                Ok(Report::ok(format!("read {} bytes", data.len())))
            }
            "write-ro" => {
                fs::open("work")?.write("planted.txt", b"pwned")?;
                Ok(Report::ok("wrote"))
            }
            "create-ro" => {
                let _w = fs::open("work")?.create("planted.txt")?;
                Ok(Report::ok("created"))
            }
            "other-dir" => {
                fs::open("secret")?;
                Ok(Report::ok("opened"))
            }
            "get" => get("api", &arg),
            "other-api" => get("other", "/"),
            "post" => {
                web::post("api", "/health", vec![], b"x".to_vec())?;
                Ok(Report::ok("posted"))
            }
            "host-header" => {
                let req = http::Request {
                    method: "GET".into(),
                    path: "/health".into(),
                    headers: vec![("Host".into(), "evil.example".into())],
                    body: None,
                    timeout_ms: None,
                };
                http::send("api", &req)?;
                Ok(Report::ok("sent"))
            }
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let args: Vec<String> = std::env::args().collect();
                Ok(Report::ok("environment probed")
                    .fact("vars", vars.len())
                    .fact("names", vars.join(","))
                    .fact("args", args.len()))
            }
            "socket" => {
                let outcome = match std::net::TcpStream::connect(arg.as_str()) {
                    Ok(_) => "connected".to_string(),
                    Err(e) => format!("refused: {e}"),
                };
                Ok(Report::ok("socket probed").fact("socket", outcome))
            }
            "ambient-fs" => {
                let outcome = match std::fs::read_dir("/") {
                    Ok(_) => "listed /".to_string(),
                    Err(e) => format!("refused: {e}"),
                };
                let read = match std::fs::read("/etc/passwd") {
                    Ok(_) => "read /etc/passwd".to_string(),
                    Err(e) => format!("refused: {e}"),
                };
                Ok(Report::ok("filesystem probed")
                    .fact("list", outcome)
                    .fact("read", read))
            }
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "flood" => {
                let mut out = std::io::stdout();
                loop {
                    let _ = writeln!(
                        out,
                        "flooding the log with a line that never ends ............................"
                    );
                }
            }
            "progress-flood" => loop {
                progress::info("flooding the log through progress .............................................");
            },
            "call-flood" => {
                // Cheap audited host calls, as fast as it can: the audit
                // log must stay bounded and the run must stop at the limit.
                let dir = fs::open("work")?;
                loop {
                    let _ = dir.stat("hello.txt");
                }
            }
            "call-flood-alternating" => {
                let dir = fs::open("work")?;
                loop {
                    let _ = dir.stat("hello.txt");
                    let _ = dir.stat("missing.txt");
                }
            }
            "confirm-flood" => {
                // Alternating questions defeat folding: the budget must hold.
                let mut question = "";
                loop {
                    let _ = progress::confirm(question);
                    question = if question.is_empty() { "a" } else { "" };
                }
            }
            "big-names" => {
                // Huge plugin-chosen names in audited calls: lines are clipped.
                let names = ["x".repeat(1 << 20), "y".repeat(1 << 20)];
                let mut i = 0usize;
                loop {
                    let _ = fs::open(&names[i % 2]);
                    i += 1;
                }
            }
            "huge-arg" => {
                // 200 MiB in one host call: past wasmtime's copy limit.
                let huge = "x".repeat(200 << 20);
                fs::open(&huge)?;
                Ok(Report::ok("passed"))
            }
            "panic" => panic!("hostile plugin panicked on purpose"),
            "db-admin" => {
                db::drop_database("agledger", "agledger")?;
                Ok(Report::ok("dropped"))
            }
            "db-other" => {
                db::connect("other")?;
                Ok(Report::ok("connected"))
            }
            "db-granted" => {
                db::connect("agledger")?;
                Ok(Report::ok("connected"))
            }
            "container-exec" => {
                let opts = container::ExecOptions {
                    env: vec![],
                    user: None,
                    workdir: None,
                    with_stdin: false,
                };
                container::exec("agledger", "api", &["sh".to_string()], &opts)?;
                Ok(Report::ok("exec"))
            }
            "container-worker-logs" => {
                container::logs("agledger", "worker", Some(10))?;
                Ok(Report::ok("logs"))
            }
            "container-other-project" => {
                container::list("otherproject")?;
                Ok(Report::ok("listed"))
            }
            other => Err(invalid(format!("unknown attack {other:?}"))),
        }
    }
}

opshost_sdk::plugin!(Hostile);
