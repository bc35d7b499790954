//! A `wasi:cli/command` component: prints its arguments one per line to
//! stdout, one line to stderr, and exits with code N when given `--exit N`.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let mut stdout = std::io::stdout().lock();
    for arg in &args {
        // A closed stdout is not worth failing over.
        let _ = writeln!(stdout, "{arg}");
    }
    let _ = stdout.flush();
    eprintln!("hello-cli: {} argument(s)", args.len());

    let exit = args
        .iter()
        .position(|arg| arg == "--exit")
        .and_then(|at| args.get(at + 1));
    match exit.map(|code| code.parse::<i32>()) {
        Some(Ok(code)) => std::process::exit(code),
        Some(Err(_)) => {
            eprintln!("hello-cli: `--exit` takes an integer exit code");
            ExitCode::from(2)
        }
        None => ExitCode::SUCCESS,
    }
}
