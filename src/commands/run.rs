//! `airssys-wasm run`: run a `wasi:cli/command` like `wasmtime run`.

use airssys_wasm_runtime::{Capability, Limits};

use super::{AuditArgs, GrantArgs, Host, LimitArgs, Target, runtime};

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "stdout and stderr are the terminal's, as with `wasmtime run`; stdin only with \
--allow stdin; the arguments after `--` are passed. The component's exit status becomes \
airssys-wasm's. No timeout applies unless --timeout is given."
)]
pub(crate) struct Args {
    #[command(flatten)]
    target: Target,

    #[command(flatten)]
    limits: LimitArgs,

    #[command(flatten)]
    grants: GrantArgs,

    #[command(flatten)]
    audit: AuditArgs,

    /// Arguments passed to the component (after `--`).
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

pub(crate) async fn main(args: Args, mut host: Host) -> anyhow::Result<u8> {
    host.audit = args.audit.format(false);
    let loaded = args.target.load(&host)?;
    if loaded.state.is_some() {
        host.collect = Some(Default::default());
    }
    let result = run(&args, &host, &loaded).await;
    loaded.record_events(&host, result)
}

async fn run(args: &Args, host: &Host, loaded: &super::Loaded) -> anyhow::Result<u8> {
    loaded.refuse_extra_grants(&args.grants, false)?;
    let fuel = args.limits.fuel.is_some() || loaded.fuel();
    let rt = runtime(host, fuel)?;
    // Like `wasmtime run`, a command runs until it ends unless told otherwise.
    let limits = args
        .limits
        .limits(loaded.limits(Limits::default().timeout(std::time::Duration::MAX)));
    // The arguments after `--` are the operator's to give: writing them is
    // granting them.
    let grants = args
        .grants
        .grants(loaded.grants()?, &[Capability::SystemCall("args".into())]);
    let options = loaded.options(grants, limits);
    let pre = rt.load(&loaded.name, &loaded.bytes, options).await?;
    loaded.check_version(pre.info())?;
    let mut argv = vec![loaded.name.clone()];
    argv.extend(args.args.iter().cloned());
    let code = pre.run(argv).await?;
    // Exit statuses above 255 wrap on Unix anyway; keep the low byte.
    Ok((code & 0xff) as u8)
}
