//! A gRPC echo server and a one-call client, for the load benchmark's gRPC rows (and for trying
//! gRPC through the gateway by hand). The service is the tests' `authgate.test.Echo`, with the
//! standard health and reflection services beside it, over h2c.
//!
//! ```sh
//! cargo run --release --example grpc_echo -- serve 127.0.0.1:50051
//! cargo run --release --example grpc_echo -- call http://127.0.0.1:8080 [TOKEN]
//! ```
//!
//! `call` makes one unary call and prints `ok subject=<the x-auth-subject the upstream saw>`,
//! or the gRPC status it got (exit 1), so a script can check a route before loading it.

#[allow(missing_docs, unreachable_pub)]
#[path = "../tests/support/grpc.rs"]
mod grpc;

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("serve"), Some(address)) => {
            let listener = match tokio::net::TcpListener::bind(address).await {
                Ok(listener) => listener,
                Err(error) => {
                    eprintln!("grpc_echo: cannot listen on {address}: {error}");
                    return ExitCode::FAILURE;
                }
            };
            grpc::serve(listener).await;
            ExitCode::SUCCESS
        }
        (Some("call"), Some(url)) => {
            let client = grpc::Client::connect(url.clone(), args.get(2).cloned()).await;
            match client.unary("hello").await {
                Ok(reply) => {
                    println!("ok subject={}", reply.subject);
                    ExitCode::SUCCESS
                }
                Err(status) => {
                    println!("{:?}: {}", status.code(), status.message());
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!("usage: grpc_echo serve ADDRESS | grpc_echo call URL [TOKEN]");
            ExitCode::FAILURE
        }
    }
}
