//! Native side of tests/bench/redact.sh: the same engine and work as the
//! plugin, compiled for the host. Usage: redact-bench-native DIR [ROUNDS]
mod bench;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: redact-bench-native DIR [ROUNDS]  (every file of DIR, not recursive)");
        std::process::exit(2);
    };
    let rounds = match args.get(1).map(|r| r.parse::<usize>()) {
        None => 5,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("ROUNDS must be a positive number");
            std::process::exit(2);
        }
    };
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot read {dir}: {e}");
            std::process::exit(1);
        }
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_file() {
            match std::fs::read(&p) {
                Ok(d) => files.push((
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    d,
                )),
                Err(e) => {
                    eprintln!("cannot read {}: {e}", p.display());
                    std::process::exit(1);
                }
            }
        }
    }
    files.sort();
    if args.get(2).is_some_and(|a| a == "stages") {
        match bench::stages("native", &files) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("{e}"),
        }
        return;
    }
    match bench::run(&files, rounds) {
        Ok(f) => println!("{}", bench::json("native", &f)),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
