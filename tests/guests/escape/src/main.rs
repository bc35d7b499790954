//! A `wasi:cli/command` that tries to reach outside its sandbox, one attempt
//! per run, chosen by its arguments. It prints what it got, or `error: ...`
//! and exits 1, so a test can assert what the guest saw:
//!
//! | arguments | tries |
//! | --- | --- |
//! | `cat PATH` | read a file |
//! | `write PATH TEXT` | create or overwrite a file |
//! | `ls DIR` | list a directory |
//! | `env NAME` | read an environment variable |
//! | `stdin` | read stdin to its end |

use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match argv.as_slice() {
        ["cat", path] => std::fs::read_to_string(path).map_err(|e| e.to_string()),
        ["write", path, text] => std::fs::write(path, text)
            .map(|()| "ok".to_owned())
            .map_err(|e| e.to_string()),
        ["ls", dir] => std::fs::read_dir(dir)
            .map_err(|e| e.to_string())
            .map(|entries| {
                let mut names: Vec<String> = entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                names.join("\n")
            }),
        ["env", name] => Ok(std::env::var(name).unwrap_or_else(|_| "unset".to_owned())),
        ["stdin"] => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map(|_| text)
                .map_err(|e| e.to_string())
        }
        _ => Err("usage: escape cat PATH | write PATH TEXT | ls DIR | env NAME | stdin".to_owned()),
    };
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
