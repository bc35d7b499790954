//! A `wasi:http/proxy` component built with `wstd`: answers every request
//! with `Hello from airssys-wasm!` and the request path.
//!
//! It is a library (`cdylib`), so the component exports only
//! `wasi:http/incoming-handler`; `wstd::http_server` still wants the handler
//! to be called `main`.

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let path = request.uri().path().to_owned();
    Ok(Response::new(
        format!("Hello from airssys-wasm! {path}\n").into(),
    ))
}
