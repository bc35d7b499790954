//! Embedding airssys-wasm with a custom capability.
//!
//! `embedder GUEST.wasm [--grant JSON] [ACCOUNT...]` runs a command
//! component (`guest/`, built as `ledger-client.wasm`) that reads account
//! balances through `acme:ledger/accounts`, an interface this program
//! serves: the `acme-ledger` capability. The component gets it only when
//! granted (`--grant '{"accounts": ["main"]}'`), and then only the accounts
//! the grant names. Denials are printed as audit events on stderr.
//!
//! Exit status: the component's; 3 when it is refused before it runs.

use std::collections::BTreeMap;
use std::process::ExitCode;

use airssys_wasm_runtime::{
    AuditSink, Capability, CapabilityProvider, Error, Grants, Limits, PrepareOptions, Runtime,
    RuntimeConfig, StoreCtx,
};
use wasmtime::component::Linker;

/// The capability's name: granted as `custom:acme-ledger:{...}`.
const LEDGER: &str = "acme-ledger";

/// The books this host keeps.
fn books() -> BTreeMap<&'static str, u64> {
    BTreeMap::from([("main", 100), ("savings", 250), ("payroll", 9000)])
}

/// What one call may read: the accounts its grant names.
struct LedgerGrant {
    accounts: Vec<String>,
}

/// The provider: links `acme:ledger/accounts` and turns each grant's JSON
/// into the accounts a call may read.
struct LedgerProvider;

impl CapabilityProvider for LedgerProvider {
    fn name(&self) -> &str {
        LEDGER
    }

    fn interfaces(&self) -> Vec<String> {
        vec!["acme:ledger/accounts".into()]
    }

    fn link(&self, linker: &mut Linker<StoreCtx>) -> wasmtime::Result<()> {
        linker.instance("acme:ledger/accounts@0.1.0")?.func_wrap(
            "balance",
            |mut store: wasmtime::StoreContextMut<'_, StoreCtx>, (account,): (String,)| {
                let ctx = store.data_mut();
                let allowed = ctx
                    .provider_state::<LedgerGrant>(LEDGER)
                    .is_some_and(|g| g.accounts.contains(&account));
                if !allowed {
                    ctx.deny(
                        &format!("custom:{LEDGER}"),
                        &account,
                        "the grant does not name this account",
                    );
                    return Ok((Err(format!("denied: account `{account}` is not granted")),));
                }
                Ok((books()
                    .get(account.as_str())
                    .copied()
                    .ok_or_else(|| format!("no account `{account}`")),))
            },
        )?;
        Ok(())
    }

    fn store_state(
        &self,
        params: &serde_json::Value,
    ) -> Result<Box<dyn std::any::Any + Send>, String> {
        let accounts = params["accounts"]
            .as_array()
            .ok_or(r#"write {"accounts": ["NAME", ...]}"#)?
            .iter()
            .map(|a| {
                a.as_str()
                    .map(str::to_string)
                    .ok_or("account names are strings")
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Box::new(LedgerGrant { accounts }))
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            let refused = e
                .chain()
                .any(|c| matches!(c.downcast_ref::<Error>(), Some(Error::NotGranted { .. })));
            ExitCode::from(if refused { 3 } else { 1 })
        }
    }
}

fn run() -> anyhow::Result<u8> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: embedder GUEST.wasm [--grant JSON] [ACCOUNT...]";
    let guest = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let mut grant = None;
    let mut accounts = Vec::new();
    while let Some(a) = args.next() {
        if a == "--grant" {
            let json = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
            grant = Some(serde_json::from_str::<serde_json::Value>(&json)?);
        } else {
            accounts.push(a);
        }
    }

    let config = RuntimeConfig::default()
        .provider(LedgerProvider)
        .audit(AuditSink::new(|event| eprintln!("audit: {event}")));
    let runtime = Runtime::new(config)?;
    let mut grants = Grants::default().allow(Capability::SystemCall("args".into()));
    if let Some(params) = grant {
        grants = grants.allow(Capability::Custom(LEDGER.into(), params));
    }
    let options = PrepareOptions::default()
        .grants(grants)
        .limits(Limits::default().timeout(std::time::Duration::from_secs(10)));
    let bytes = std::fs::read(&guest).map_err(|e| anyhow::anyhow!("cannot read {guest}: {e}"))?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async {
        let name = std::path::Path::new(&guest)
            .file_name()
            .map_or(guest.clone(), |n| n.to_string_lossy().into_owned());
        let component = runtime.load(&name, &bytes, options).await?;
        let mut argv = vec![name];
        argv.extend(accounts);
        let code = component.run(argv).await?;
        Ok((code & 0xff) as u8)
    })
}
