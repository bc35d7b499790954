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
