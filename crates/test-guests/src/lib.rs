//! The guest components of airssys-wasm, built for `wasm32-wasip2` from
//! source by this crate's build script, for tests and benchmarks. Each
//! constant is the absolute path of one `.wasm` component.
//!
//! A dev-dependency only: building it builds the guest workspace
//! (`examples/` and `tests/guests/`) once, with `cargo build --release
//! --target wasm32-wasip2`, into `<target dir>/guests`. It needs the
//! `wasm32-wasip2` target (`rustup target add wasm32-wasip2`).
//!
//! ```no_run
//! let bytes = std::fs::read(airssys_wasm_test_guests::ECHO)?;
//! # Ok::<(), std::io::Error>(())
//! ```

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
