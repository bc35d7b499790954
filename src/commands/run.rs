//! `airssys-wasm run`: run a `wasi:cli/command` like `wasmtime run`.

use std::path::PathBuf;

use airssys_wasm_runtime::{Capability, Limits, PrepareOptions};

use super::{GrantArgs, LimitArgs, read_component, runtime};

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "stdout and stderr are the terminal's, as with `wasmtime run`; stdin only with \
--allow stdin; the arguments after `--` are passed. The component's exit status becomes \
airssys-wasm's. No timeout applies unless --timeout is given."
)]
pub(crate) struct Args {
    /// The component file (a wasi:cli/command).
    #[arg(value_name = "FILE")]
    file: PathBuf,

    #[command(flatten)]
    limits: LimitArgs,

    #[command(flatten)]
    grants: GrantArgs,

    /// Arguments passed to the component (after `--`).
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

pub(crate) async fn main(args: Args, cache_dir: Option<PathBuf>) -> anyhow::Result<u8> {
    let (name, bytes) = read_component(&args.file)?;
    let rt = runtime(cache_dir, args.limits.fuel.is_some())?;
    // Like `wasmtime run`, a command runs until it ends unless told otherwise.
    let limits = args
        .limits
        .limits(Limits::default().timeout(std::time::Duration::MAX));
    // The arguments after `--` are the operator's to give: writing them is
    // granting them.
    let grants = args.grants.grants(&[Capability::SystemCall("args".into())]);
    let options = PrepareOptions::default().limits(limits).grants(grants);
    let pre = rt.load(&name, &bytes, options).await?;
    let mut argv = vec![name];
    argv.extend(args.args);
    let code = pre.run(argv).await?;
    // Exit statuses above 255 wrap on Unix anyway; keep the low byte.
    Ok((code & 0xff) as u8)
}
