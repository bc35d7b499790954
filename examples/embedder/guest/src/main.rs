//! Prints the balance of each account named in its arguments, read through
//! `acme:ledger/accounts`, a custom capability of the embedder example.
//! Exits 1 when any read fails.

use std::process::ExitCode;

wit_bindgen::generate!({
    path: "../wit",
    world: "client",
});

fn main() -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    for account in std::env::args().skip(1) {
        match acme::ledger::accounts::balance(&account) {
            Ok(balance) => println!("{account}: {balance}"),
            Err(e) => {
                println!("{account}: error: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    code
}
