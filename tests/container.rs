//! The container capability against the real Docker Engine and the
//! AGLedger stand-in deployment (compose project `opshost-test`, brought up
//! by tests/standin-up.sh). The tests share one deployment (with other
//! test runs on the machine too), so they hold its lock.

mod common;

use common::standin::{deployment_lock, docker};
use common::*;

fn project() -> String {
    std::env::var("OPSHOST_TEST_STANDIN_PROJECT").unwrap_or_else(|_| {
        panic!("OPSHOST_TEST_STANDIN_PROJECT is not set: run the tests with tests/run.sh, which brings up the stand-in")
    })
}

fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    sb.write_config(&format!(
        "[containers.agledger]\nproject = \"{}\"\n",
        project()
    ));
    // The standard config names [containers.agledger] already: replace it.
    let text = std::fs::read_to_string(sb.path("config.toml")).expect("config");
    let standard = "[containers.agledger]\nproject = \"agledger\"\n";
    std::fs::write(sb.path("config.toml"), text.replacen(standard, "", 1)).expect("config");
    sb.write_policy(
        "[[plugin]]\nvendor = \"opshost-testing\"\nname = \"ctlprobe\"\n\
         allow = [\"container=agledger:inspect,logs,exec,stop,start,pull,recreate,run\"]\n",
    );
    sb
}

fn probe(sb: &Sandbox, args: &[&str]) -> serde_json::Value {
    let out = sb.run(&plugin("ctlprobe"), &["--json", "--timeout", "3m"], args);
    let v = result_json(&out);
    assert_eq!(v["ok"], true, "{args:?}: {}", out.combined());
    v["data"].clone()
}

fn probe_fails(sb: &Sandbox, args: &[&str]) -> serde_json::Value {
    let out = sb.run(&plugin("ctlprobe"), &["--json", "--timeout", "3m"], args);
    let v = result_json(&out);
    assert_eq!(v["ok"], false, "{args:?} should fail: {}", out.combined());
    v
}

#[test]
fn list_and_inspect_see_only_the_project() {
    let _d = deployment_lock();
    let sb = sandbox();
    // A container outside the project, with a service label that would match.
    docker(&["rm", "-f", "opshost-outsider"]);
    docker(&[
        "run",
        "-d",
        "--name",
        "opshost-outsider",
        "--label",
        "com.docker.compose.service=agledger-api",
        "agledger/agledger:1.3.2",
        "version",
    ]);
    let list = probe(&sb, &["list"]);
    let services: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["service"].as_str())
        .collect();
    for s in ["agledger-api", "agledger-worker", "postgres"] {
        assert!(services.contains(&s), "{s} in {services:?}");
    }
    assert!(list
        .as_array()
        .expect("list")
        .iter()
        .all(|c| c["name"] != "opshost-outsider"));
    let api = probe(&sb, &["inspect", "agledger-api"]);
    assert_eq!(api["state"], "running");
    assert_eq!(api["health"], "healthy");
    // By tag or, after an upgrade and a rollback, by pinned digest.
    assert!(
        api["image"]
            .as_str()
            .is_some_and(|i| i.contains("agledger/agledger")),
        "{api}"
    );
    assert_eq!(
        api["labels"]["org.opencontainers.image.version"], "1.3.2",
        "{api}"
    );
    let v = probe_fails(&sb, &["inspect", "no-such-service"]);
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("no container for service")),
        "{v}"
    );
    docker(&["rm", "-f", "opshost-outsider"]);
}

#[test]
fn environment_and_logs() {
    let _d = deployment_lock();
    let sb = sandbox();
    let env = probe(&sb, &["env", "agledger-api"]);
    assert!(
        env.as_array()
            .expect("env")
            .iter()
            .any(|k| k == "API_KEY_SECRET"),
        "{env}"
    );
    let logs = probe(&sb, &["logs", "agledger-api", "50"]);
    assert!(logs.as_str().is_some_and(|l| !l.is_empty()), "{logs}");
}

#[test]
fn exec_streams_exit_codes_and_stdin() {
    let _d = deployment_lock();
    let sb = sandbox();
    let r = probe(&sb, &["exec", "agledger-api", "/agledger", "version"]);
    assert_eq!(r["code"], 0);
    assert!(
        r["stdout"].as_str().is_some_and(|s| s.contains("1.3.2")),
        "{r}"
    );
    let r = probe(
        &sb,
        &[
            "exec",
            "postgres",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    assert_eq!(r["code"], 3);
    assert_eq!(r["stdout"], "out\n");
    assert_eq!(r["stderr"], "err\n");
    let r = probe(
        &sb,
        &["exec-stdin", "postgres", "hello through stdin", "cat"],
    );
    assert_eq!(r["stdout"], "hello through stdin");
    let r = probe(&sb, &["exec", "postgres", "sh", "-c", "echo $PROBE"]);
    assert_eq!(r["stdout"], "1\n");
}

#[test]
fn stop_start_restart_and_wait_healthy() {
    let _d = deployment_lock();
    let sb = sandbox();
    probe(&sb, &["stop", "agledger-worker"]);
    assert_eq!(
        probe(&sb, &["inspect", "agledger-worker"])["state"],
        "exited"
    );
    probe(&sb, &["start", "agledger-worker"]);
    assert_eq!(
        probe(&sb, &["wait", "agledger-worker", "30000"])["health"],
        "healthy"
    );
    probe(&sb, &["restart", "agledger-worker"]);
    assert_eq!(
        probe(&sb, &["wait", "agledger-worker", "30000"])["health"],
        "healthy"
    );
}

#[test]
fn pull_returns_the_digest_and_only_allowed_images() {
    let _d = deployment_lock();
    let sb = sandbox();
    let digest = probe(&sb, &["pull", "127.0.0.1:5000/agledger/agledger:1.3.3"]);
    assert!(
        digest
            .as_str()
            .is_some_and(|d| d.starts_with("127.0.0.1:5000/agledger/agledger@sha256:")),
        "{digest}"
    );
    let v = probe_fails(&sb, &["pull", "127.0.0.1:5000/evil/miner:latest"]);
    assert_eq!(v["exit_code"], DENIED, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("not from a repository this project may use")),
        "{v}"
    );
    let v = probe_fails(&sb, &["pull", "127.0.0.1:5000/agledger/agledger:0.0.404"]);
    assert_eq!(v["exit_code"], PLUGIN_FAILED, "{v}");
}

#[test]
fn recreate_keeps_the_configuration_and_rolls_back_on_failure() {
    let _d = deployment_lock();
    let sb = sandbox();
    let before = probe(&sb, &["inspect", "agledger-worker"]);
    let fmt = "{{json .HostConfig.PortBindings}} {{.HostConfig.RestartPolicy.Name}} {{json .Config.Healthcheck}} {{json .Config.Cmd}} {{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}";
    let name = before["name"].as_str().expect("name").to_string();
    let config_before = docker(&["inspect", "-f", fmt, &name]);

    let after = probe(
        &sb,
        &[
            "recreate",
            "agledger-worker",
            "-",
            "OPSHOST_PROBE=recreated",
        ],
    );
    assert_eq!(after["name"], before["name"]);
    assert_ne!(after["id"], before["id"]);
    assert_eq!(after["labels"], before["labels"]);
    assert_eq!(
        docker(&["inspect", "-f", fmt, &name]),
        config_before,
        "ports, restart, healthcheck, command, networks kept"
    );
    let env = docker(&["inspect", "-f", "{{json .Config.Env}}", &name]);
    assert!(
        env.contains("OPSHOST_PROBE=recreated") && env.contains("API_KEY_SECRET="),
        "{env}"
    );
    assert_eq!(
        probe(&sb, &["wait", "agledger-worker", "30000"])["health"],
        "healthy"
    );
    let old_id = before["id"].as_str().expect("id");
    assert_eq!(
        docker(&[
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("id={old_id}")
        ]),
        "",
        "the old container is gone"
    );

    // An image that cannot be created: the new container is made before the
    // old one stops, so the running one is never touched.
    let current = probe(&sb, &["inspect", "agledger-worker"]);
    let started = docker(&[
        "inspect",
        "-f",
        "{{.State.StartedAt}}",
        current["id"].as_str().expect("id"),
    ]);
    let v = probe_fails(
        &sb,
        &[
            "recreate",
            "agledger-worker",
            "127.0.0.1:5000/agledger/agledger:0.0.404",
        ],
    );
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("No such image") && e.contains("0.0.404")),
        "{v}"
    );
    let restored = probe(&sb, &["inspect", "agledger-worker"]);
    assert_eq!(restored["id"], current["id"]);
    assert_eq!(restored["state"], "running");
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.State.StartedAt}}",
            current["id"].as_str().expect("id")
        ]),
        started,
        "never stopped"
    );

    // A new image.
    let upgraded = probe(
        &sb,
        &[
            "recreate",
            "agledger-worker",
            "127.0.0.1:5000/agledger/agledger:1.3.3",
        ],
    );
    assert!(upgraded["image"]
        .as_str()
        .is_some_and(|i| i.ends_with(":1.3.3")));
    assert_eq!(
        probe(&sb, &["wait", "agledger-worker", "30000"])["health"],
        "healthy"
    );
    probe(
        &sb,
        &[
            "recreate",
            "agledger-worker",
            "127.0.0.1:5000/agledger/agledger:1.3.2",
        ],
    );
    probe(&sb, &["wait", "agledger-worker", "30000"]);
}

#[test]
fn a_never_healthy_release_times_out_with_the_last_health_log() {
    let _d = deployment_lock();
    let sb = sandbox();
    probe(
        &sb,
        &[
            "recreate",
            "agledger-worker",
            "127.0.0.1:5000/agledger/agledger:1.3.4",
        ],
    );
    let v = probe_fails(&sb, &["wait", "agledger-worker", "4000"]);
    let error = v["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("timed out") && error.contains("last health check"),
        "{error}"
    );
    probe(
        &sb,
        &[
            "recreate",
            "agledger-worker",
            "127.0.0.1:5000/agledger/agledger:1.3.2",
        ],
    );
    assert_eq!(
        probe(&sb, &["wait", "agledger-worker", "30000"])["health"],
        "healthy"
    );
}

#[test]
fn one_off_runs_use_the_service_configuration_and_clean_up() {
    let _d = deployment_lock();
    let sb = sandbox();
    let r = probe(
        &sb,
        &[
            "run",
            "agledger-api",
            "127.0.0.1:5000/agledger/agledger:1.3.3",
            "version",
        ],
    );
    assert_eq!(r["code"], 0);
    assert!(
        r["stdout"].as_str().is_some_and(|s| s.contains("1.3.3")),
        "{r}"
    );
    // preflight needs the service's environment and network to reach the database.
    let r = probe(&sb, &["run", "agledger-api", "-", "preflight"]);
    assert_eq!(r["code"], 0, "{r}");
    let r = probe(&sb, &["run", "agledger-api", "-", "no-such-role"]);
    assert_ne!(r["code"], 0);
    let leftovers = docker(&["ps", "-aq", "--filter", "name=opshost_run"]);
    assert_eq!(leftovers, "", "one-off containers are removed");
}

/// Bundled database mode: the connection comes from the install's compose
/// `.env` (POSTGRES_*), goes to the project's postgres container, and
/// pg_dump/pg_restore run inside that container through the exec API.
#[test]
fn bundled_database_dump_and_restore_run_inside_the_container() {
    let _d = deployment_lock();
    let install =
        std::env::var("OPSHOST_TEST_STANDIN").expect("OPSHOST_TEST_STANDIN (set by tests/run.sh)");
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("backups")).expect("backups");
    std::fs::write(
        sb.path("config.toml"),
        format!(
            "[dir.backups]\npath = \"backups\"\n\
             [containers.agledger]\nproject = \"{}\"\n\
             [db.agledger]\nenv_file = \"{install}/compose/.env\"\ncontainer = \"agledger\"\n",
            project()
        ),
    )
    .expect("config");
    sb.write_policy(
        "[[plugin]]\nvendor = \"opshost-testing\"\nname = \"dbprobe-read\"\nallow = [\"db=agledger:read\"]\n\
         [[plugin]]\nvendor = \"opshost-testing\"\nname = \"dbprobe-admin\"\nallow = [\"db=agledger:admin\", \"fs=backups:rw\"]\n",
    );
    let run = |level: &str, args: &[&str]| {
        let out = sb.run(&plugin(&format!("dbprobe-{level}")), &["--json"], args);
        let v = result_json(&out);
        assert_eq!(v["ok"], true, "{args:?}: {}", out.combined());
        v
    };
    let count = "SELECT count(*) FROM vault_entries";
    let entries = run("read", &["query", count])["data"]["rows"][0][0].clone();
    assert!(entries.as_i64().is_some_and(|n| n > 0), "{entries}");

    let dumped = run("admin", &["dump", "bundled.dump"]);
    assert!(
        std::fs::metadata(sb.path("backups/bundled.dump"))
            .expect("dump")
            .len()
            > 0
    );
    assert!(dumped["facts"]["server"]
        .as_str()
        .is_some_and(|s| s.starts_with("15.")));
    run("admin", &["create-db", "agledger_opshost_copy"]);
    run(
        "admin",
        &["restore", "bundled.dump", "agledger_opshost_copy", "4"],
    );
    let pg = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={}", project()),
        "--filter",
        "label=com.docker.compose.service=postgres",
    ]);
    let copied = docker(&[
        "exec",
        &pg,
        "psql",
        "-U",
        "agledger",
        "-d",
        "agledger_opshost_copy",
        "-Atc",
        count,
    ]);
    assert_eq!(copied, entries.to_string());
    run("admin", &["drop-db", "agledger_opshost_copy"]);
}

/// Every container call passes the gate: an ungranted verb is refused
/// before the engine is asked, with the gate's audit line (capability,
/// the deployment as resource, the verb, `denied`, the missing grant).
#[test]
fn an_ungranted_container_verb_is_denied_by_the_gate() {
    let sb = Sandbox::new();
    sb.write_policy(
        "[[plugin]]\nvendor = \"opshost-testing\"\nname = \"hostile\"\n\
         allow = [\"fs=work:ro\", \"http=api:GET\", \"db=agledger:read\", \"container=agledger/api:logs\"]\n",
    );
    let out = sb.run(&plugin("hostile"), &[], &["container-exec"]);
    assert_eq!(out.code, DENIED, "{}", out.combined());
    let denied = sb.audited("container", "denied");
    assert_eq!(denied.len(), 1, "{denied:?}");
    let line = &denied[0];
    assert_eq!(line["resource"], "agledger", "{line}");
    assert_eq!(line["verb"], "exec", "{line}");
    assert!(
        line["detail"]
            .as_str()
            .is_some_and(|d| d.contains("container=agledger/api:exec is not granted")),
        "{line}"
    );
}

/// Plan mode at the capability: changes are recorded and answered with
/// their documented simulated results, and the deployment is untouched.
#[test]
fn plan_mode_answers_changes_without_making_them() {
    let _d = deployment_lock();
    let sb = sandbox();
    let worker = probe(&sb, &["inspect", "agledger-worker"]);
    let id = worker["id"].as_str().expect("id").to_string();
    let started = || docker(&["inspect", "-f", "{{.State.StartedAt}}", &id]);
    let before = started();
    let plan = |args: &[&str]| {
        let out = sb.run(
            &plugin("ctlprobe"),
            &["--json", "--plan", "--timeout", "3m"],
            args,
        );
        let v = result_json(&out);
        assert_eq!(v["ok"], true, "{args:?}: {}", out.combined());
        v
    };

    let v = plan(&["stop", "agledger-worker"]);
    let changes = v["plan"]["changes"].as_array().cloned().unwrap_or_default();
    assert!(
        changes
            .iter()
            .any(|c| c["capability"] == "container" && c["verb"] == "stop"),
        "{v}"
    );
    assert_eq!(
        probe(&sb, &["inspect", "agledger-worker"])["state"],
        "running"
    );
    assert_eq!(started(), before, "the worker was never stopped");

    // exec: nothing runs; the process exits 0 with no output.
    let marker = "/tmp/opshost-plan-exec-marker";
    let pg = common::standin::container(common::standin::Mode::Bundled, "postgres");
    docker(&["exec", &pg, "rm", "-f", marker]);
    let v = plan(&[
        "exec",
        "postgres",
        "sh",
        "-c",
        &format!("echo ran > {marker}; exit 3"),
    ]);
    assert_eq!(v["data"]["code"], 0, "{v}");
    assert_eq!(v["data"]["stdout"], "", "{v}");
    assert_eq!(
        docker(&[
            "exec",
            &pg,
            "sh",
            "-c",
            &format!("test -e {marker} && echo yes || echo no")
        ]),
        "no"
    );

    // recreate: the current container, unchanged.
    let v = plan(&["recreate", "agledger-worker", "-", "OPSHOST_PROBE=planned"]);
    assert_eq!(v["data"]["id"], id.as_str(), "{v}");
    let env = docker(&["inspect", "-f", "{{json .Config.Env}}", &id]);
    assert!(!env.contains("OPSHOST_PROBE=planned"), "{env}");

    // run: exit 0, no one-off container made.
    let v = plan(&["run", "agledger-api", "-", "version"]);
    assert_eq!(v["data"]["code"], 0, "{v}");
    assert_eq!(v["data"]["stdout"], "", "{v}");

    // pull of an image that is not here: a clearly fake digest.
    let v = plan(&["pull", "127.0.0.1:5000/agledger/agledger:9.9.9-never"]);
    assert_eq!(
        v["data"],
        format!("127.0.0.1:5000/agledger/agledger@sha256:{}", "0".repeat(64)),
        "{v}"
    );
    assert_eq!(
        docker(&[
            "images",
            "-q",
            "127.0.0.1:5000/agledger/agledger:9.9.9-never"
        ]),
        ""
    );

    assert_eq!(started(), before, "the worker was never restarted");
    let planned = sb.audited("container", "planned");
    let verbs: Vec<&str> = planned.iter().filter_map(|e| e["verb"].as_str()).collect();
    assert_eq!(
        verbs,
        ["stop", "exec", "recreate", "run", "pull"],
        "{planned:?}"
    );
    let acted = sb.audited("container", "ok");
    let changes = [
        "stop", "start", "restart", "pull", "recreate", "run", "exec",
    ];
    assert!(
        acted
            .iter()
            .all(|e| !changes.iter().any(|c| e["verb"] == *c)),
        "only reads acted: {acted:?}"
    );
}
