//! How the CLI prints: one `error: ...` line with the cause chain, exit
//! codes by error kind, JSON when asked.

use airssys_wasm_runtime::Error;

use crate::exit;

/// The error and its causes on one line, without repeating a cause that
/// the message already contains.
pub(crate) fn error_chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

/// The exit status for an error, by what the user must fix.
pub(crate) fn exit_code(e: &anyhow::Error) -> u8 {
    // A runtime error inside a deployment error is judged as itself.
    let inner = e
        .chain()
        .find_map(|c| match c.downcast_ref::<airssys_wasm_deploy::Error>() {
            Some(airssys_wasm_deploy::Error::Component(r)) => Some(r),
            _ => None,
        });
    match inner.or_else(|| e.chain().find_map(|c| c.downcast_ref::<Error>())) {
        Some(
            Error::NotAComponent { .. }
            | Error::InvalidComponent { .. }
            | Error::UnsupportedImport { .. }
            | Error::MissingExport { .. }
            | Error::AmbiguousFunction { .. }
            | Error::InvalidArguments { .. }
            | Error::Io { .. }
            | Error::Config { .. }
            | Error::FuelNotEnabled { .. }
            | Error::NotGranted { .. }
            | Error::Unsupported { .. },
        ) => exit::INPUT,
        Some(_) => exit::COMPONENT,
        None if e.chain().any(|c| {
            matches!(
                c.downcast_ref::<airssys_wasm_deploy::Error>(),
                Some(
                    airssys_wasm_deploy::Error::Invalid(_)
                        | airssys_wasm_deploy::Error::Immutable { .. }
                )
            )
        }) =>
        {
            exit::INPUT
        }
        None if e.chain().any(|c| c.downcast_ref::<InputError>().is_some()) => exit::INPUT,
        None => exit::COMPONENT,
    }
}

/// A problem with what the user gave the CLI (a file, a flag's value).
#[derive(Debug)]
pub(crate) struct InputError(pub String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// Write `text` to stdout. A closed pipe (`| head`) comes back as an
/// `io::Error` of kind `BrokenPipe`, which `main` treats as a quiet end.
pub(crate) fn print_text(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Whether the error is stdout having been closed by the reader.
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Print `value` as pretty JSON on stdout.
pub(crate) fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// A spinner on stderr while a step that may take a while runs (compiling,
/// writing a version): drawn only when stderr is a terminal, cleared when
/// dropped.
pub(crate) struct Progress(indicatif::ProgressBar);

impl Progress {
    pub(crate) fn start(message: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        // Drawn to stderr, and only when it is a terminal.
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.set_message(message);
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        Self(bar)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
