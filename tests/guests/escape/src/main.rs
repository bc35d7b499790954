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
//! | `link SRC DST` | make a hard link |
//! | `rename SRC DST` | move a file |
//! | `truncate PATH` | open a file for writing, truncating it |
//! | `touch PATH` | set a file's modification time |
//! | `symlink-read TARGET LINK` | create a symlink to TARGET, then read through it |
//! | `hoard PATH` | open PATH again and again, keeping every handle |
//! | `fetch URL` | GET a URL through `wasi:http/outgoing-handler` |
//! | `connect HOST:PORT` | open a TCP connection, send a line, read the answer |
//! | `resolve NAME` | look a name up (`wasi:sockets/ip-name-lookup`), print its IPv4 answers |
//! | `listen PORT` | bind and listen on a TCP port |
//! | `udp HOST:PORT` | send one UDP datagram |

mod net;

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
        ["link", src, dst] => std::fs::hard_link(src, dst)
            .map(|()| "linked".to_owned())
            .map_err(|e| e.to_string()),
        ["rename", src, dst] => std::fs::rename(src, dst)
            .map(|()| "renamed".to_owned())
            .map_err(|e| e.to_string()),
        ["truncate", path] => std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .map(|_| "truncated".to_owned())
            .map_err(|e| e.to_string()),
        ["touch", path] => std::fs::File::open(path)
            .and_then(|f| f.set_modified(std::time::SystemTime::UNIX_EPOCH))
            .map(|()| "touched".to_owned())
            .map_err(|e| e.to_string()),
        ["symlink-read", target, link] => symlink(target, link)
            .and_then(|()| std::fs::read_to_string(link).map_err(|e| e.to_string())),
        ["hoard", path] => hoard(path),
        ["fetch", url] => net::fetch(url),
        ["connect", addr] => net::connect(addr),
        ["resolve", name] => net::resolve(name),
        ["listen", port] => net::listen(port),
        ["udp", addr] => net::udp(addr),
        _ => Err(
            "usage: escape cat PATH | write PATH TEXT | ls DIR | env NAME | stdin | \
                  fetch URL | connect HOST:PORT | resolve NAME | listen PORT | udp HOST:PORT"
                .to_owned(),
        ),
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

/// Open `path` until the host says no; report how far it got.
fn hoard(path: &str) -> Result<String, String> {
    let mut kept = Vec::new();
    loop {
        match std::fs::File::open(path) {
            Ok(f) => kept.push(f),
            Err(e) => return Err(format!("opened {} files, then: {e}", kept.len())),
        }
    }
}

/// Create the symlink `link` -> `target` through the preopened directory
/// `link` lies in (the standard library's `symlink_path` is unstable).
fn symlink(target: &str, link: &str) -> Result<(), String> {
    for (dir, mount) in wasip2::filesystem::preopens::get_directories() {
        let Some(rest) = link.strip_prefix(mount.trim_end_matches('/')) else {
            continue;
        };
        let rest = rest.trim_start_matches('/');
        return dir.symlink_at(target, rest).map_err(|e| format!("{e:?}"));
    }
    Err(format!("{link} is in no granted directory"))
}
