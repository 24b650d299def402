//! A real gRPC upstream and client for the gRPC tests and the load script's gRPC rows.
//!
//! The upstream serves `authgate.test.Echo` (written out by hand as generated code would be, so
//! no protoc is needed), the standard health service (tonic-health) and server reflection
//! (tonic-reflection), over HTTP/2 without TLS (h2c). It is served by hyper directly rather than
//! by tonic's server so that it does not enforce `grpc-timeout` itself: the tests see what the
//! gateway does with a deadline.
//!
//! Echo's methods:
//! - `Unary`: one reply with the message and the `x-auth-subject` the call arrived with;
//! - `Stream`: `count` replies (server streaming), `delay_ms` apart;
//! - `Chat`: one reply per request message, as each arrives (bidirectional);
//! - `Slow`: one reply after `delay_ms`;
//! - `Fail`: the status `count` with `message` (the upstream's own error, to pass untouched).
#![allow(dead_code, clippy::unwrap_used)]

use std::convert::Infallible;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::Duration;

use http::uri::PathAndQuery;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tonic::codegen::{BoxFuture, BoxStream, Context, Poll, Service};
use tonic::server::NamedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

/// Echo's request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    #[prost(string, tag = "1")]
    pub message: String,
    #[prost(uint32, tag = "2")]
    pub count: u32,
    #[prost(uint64, tag = "3")]
    pub delay_ms: u64,
}

/// Echo's reply.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoReply {
    #[prost(string, tag = "1")]
    pub message: String,
    /// The `x-auth-subject` the upstream received ("" when none).
    #[prost(string, tag = "2")]
    pub subject: String,
    #[prost(uint32, tag = "3")]
    pub index: u32,
    /// Whether an `authorization` header reached the upstream.
    #[prost(bool, tag = "4")]
    pub saw_authorization: bool,
}

/// The package-qualified service name.
pub const SERVICE: &str = "authgate.test.Echo";

/// The Echo service: dispatches on the method path as generated servers do.
#[derive(Clone, Default)]
pub struct Echo;

impl NamedService for Echo {
    const NAME: &'static str = SERVICE;
}

fn reply_for<T>(request: &Request<T>, message: String, index: u32) -> EchoReply {
    let metadata = request.metadata();
    EchoReply {
        message,
        subject: metadata
            .get("x-auth-subject")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        index,
        saw_authorization: metadata.get("authorization").is_some(),
    }
}

/// One method as a tower service, from a closure: what generated code writes as a struct.
struct Method<F, Out>(F, PhantomData<fn() -> Out>);

impl<F, In, Out> Service<Request<In>> for Method<F, Out>
where
    F: FnMut(Request<In>) -> BoxFuture<Response<Out>, Status>,
{
    type Response = Response<Out>;
    type Error = Status;
    type Future = BoxFuture<Response<Out>, Status>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<In>) -> Self::Future {
        (self.0)(request)
    }
}

fn method<F, In, Out>(f: F) -> Method<F, Out>
where
    F: FnMut(Request<In>) -> BoxFuture<Response<Out>, Status>,
{
    Method(f, PhantomData)
}

fn unary(call: Request<EchoRequest>) -> BoxFuture<Response<EchoReply>, Status> {
    let reply = reply_for(&call, call.get_ref().message.clone(), 0);
    Box::pin(async move { Ok(Response::new(reply)) })
}

fn slow(call: Request<EchoRequest>) -> BoxFuture<Response<EchoReply>, Status> {
    let delay = Duration::from_millis(call.get_ref().delay_ms);
    let reply = reply_for(&call, call.get_ref().message.clone(), 0);
    Box::pin(async move {
        tokio::time::sleep(delay).await;
        Ok(Response::new(reply))
    })
}

fn fail(call: Request<EchoRequest>) -> BoxFuture<Response<EchoReply>, Status> {
    let code = Code::from(call.get_ref().count as i32);
    let message = call.get_ref().message.clone();
    Box::pin(async move { Err(Status::new(code, message)) })
}

fn stream(call: Request<EchoRequest>) -> BoxFuture<Response<BoxStream<EchoReply>>, Status> {
    let EchoRequest {
        message,
        count,
        delay_ms,
    } = call.get_ref().clone();
    let template = reply_for(&call, String::new(), 0);
    let replies = tokio_stream::iter(0..count).then(move |index| {
        let mut reply = template.clone();
        reply.message = format!("{message} {index}");
        reply.index = index;
        async move {
            if index > 0 {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            }
            Ok(reply)
        }
    });
    let replies: BoxStream<EchoReply> = Box::pin(replies);
    Box::pin(async move { Ok(Response::new(replies)) })
}

fn chat(
    call: Request<Streaming<EchoRequest>>,
) -> BoxFuture<Response<BoxStream<EchoReply>>, Status> {
    let template = reply_for(&call, String::new(), 0);
    let mut index = 0;
    let replies = call.into_inner().map(move |message| {
        let mut reply = template.clone();
        reply.message = message?.message;
        reply.index = index;
        index += 1;
        Ok(reply)
    });
    let replies: BoxStream<EchoReply> = Box::pin(replies);
    Box::pin(async move { Ok(Response::new(replies)) })
}

// The streaming methods implement tonic's traits directly, as generated code does: through the
// blanket impl over tower services, the boxed stream's lifetime cannot be inferred.
struct StreamMethod;

impl tonic::server::ServerStreamingService<EchoRequest> for StreamMethod {
    type Response = EchoReply;
    type ResponseStream = BoxStream<EchoReply>;
    type Future = BoxFuture<Response<BoxStream<EchoReply>>, Status>;

    fn call(&mut self, request: Request<EchoRequest>) -> Self::Future {
        stream(request)
    }
}

struct ChatMethod;

impl tonic::server::StreamingService<EchoRequest> for ChatMethod {
    type Response = EchoReply;
    type ResponseStream = BoxStream<EchoReply>;
    type Future = BoxFuture<Response<BoxStream<EchoReply>>, Status>;

    fn call(&mut self, request: Request<Streaming<EchoRequest>>) -> Self::Future {
        chat(request)
    }
}

impl<B> Service<http::Request<B>> for Echo
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let mut grpc = tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
        let path = request.uri().path().to_string();
        match path.strip_prefix("/authgate.test.Echo/") {
            Some("Unary") => Box::pin(async move { Ok(grpc.unary(method(unary), request).await) }),
            Some("Slow") => Box::pin(async move { Ok(grpc.unary(method(slow), request).await) }),
            Some("Fail") => Box::pin(async move { Ok(grpc.unary(method(fail), request).await) }),
            Some("Stream") => {
                Box::pin(async move { Ok(grpc.server_streaming(StreamMethod, request).await) })
            }
            Some("Chat") => Box::pin(async move { Ok(grpc.streaming(ChatMethod, request).await) }),
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

/// Serves Echo, health (`SERVING`, also for "authgate.test.Echo") and reflection on `listener`
/// until the task is dropped.
pub async fn serve(listener: TcpListener) {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(SERVICE, tonic_health::ServingStatus::Serving)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .unwrap();
    let routes = tonic::service::Routes::new(Echo)
        .add_service(health)
        .add_service(reflection)
        .prepare();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let service = TowerToHyperService::new(routes.clone());
        tokio::spawn(async move {
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Starts the gRPC upstream on a free port; returns its address (h2c).
pub async fn start_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve(listener));
    address
}

/// A gRPC client (tonic's, over h2c) for Echo, health and reflection.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    token: Option<String>,
}

impl Client {
    /// Connects to `url` (`http://127.0.0.1:PORT`), sending `token` as a bearer token if given.
    pub async fn connect(url: String, token: Option<String>) -> Client {
        let channel = tonic::transport::Endpoint::from_shared(url)
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .unwrap();
        Client { channel, token }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        request
    }

    async fn grpc(&self) -> tonic::client::Grpc<Channel> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.unwrap();
        grpc
    }

    /// Calls a unary method (`Unary`, `Slow` or `Fail`) with `request`.
    pub async fn call(
        &self,
        name: &'static str,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoReply>, Status> {
        let path = PathAndQuery::try_from(format!("/{SERVICE}/{name}")).unwrap();
        self.grpc()
            .await
            .unary(request, path, ProstCodec::default())
            .await
    }

    /// `Unary` with `message`, with the client's token.
    pub async fn unary(&self, message: &str) -> Result<EchoReply, Status> {
        let request = self.request(EchoRequest {
            message: message.to_string(),
            ..EchoRequest::default()
        });
        Ok(self.call("Unary", request).await?.into_inner())
    }

    /// A request for `message` with the client's token, to adjust before [`Client::call`].
    pub fn prepared(&self, request: EchoRequest) -> Request<EchoRequest> {
        self.request(request)
    }

    /// `Stream`: the replies as they arrive, each with when it arrived.
    pub async fn stream(
        &self,
        message: &str,
        count: u32,
        delay_ms: u64,
    ) -> Result<Vec<(EchoReply, std::time::Instant)>, Status> {
        let request = self.request(EchoRequest {
            message: message.to_string(),
            count,
            delay_ms,
        });
        let path = PathAndQuery::from_static("/authgate.test.Echo/Stream");
        let mut stream = self
            .grpc()
            .await
            .server_streaming(request, path, ProstCodec::default())
            .await?
            .into_inner();
        let mut replies = Vec::new();
        while let Some(reply) = stream.message().await? {
            replies.push((reply, std::time::Instant::now()));
        }
        Ok(replies)
    }

    /// `Chat`: sends each of `messages` only after the reply to the one before has arrived,
    /// which only a stream flowing both ways at once can answer.
    pub async fn chat(&self, messages: &[&str]) -> Result<Vec<EchoReply>, Status> {
        let (sender, receiver) = tokio::sync::mpsc::channel::<EchoRequest>(1);
        let outgoing = tokio_stream::wrappers::ReceiverStream::new(receiver);
        let path = PathAndQuery::from_static("/authgate.test.Echo/Chat");
        let request = self.request(outgoing);
        let mut grpc = self.grpc().await;
        let first = EchoRequest {
            message: messages[0].to_string(),
            ..EchoRequest::default()
        };
        sender.send(first).await.unwrap();
        let mut incoming = grpc
            .streaming(request, path, ProstCodec::default())
            .await?
            .into_inner();
        let mut replies = Vec::new();
        for next in messages.iter().skip(1) {
            let reply = tokio::time::timeout(Duration::from_secs(5), incoming.message())
                .await
                .expect("a reply before the next message is sent")?
                .expect("the stream is still open");
            replies.push(reply);
            let message = EchoRequest {
                message: next.to_string(),
                ..EchoRequest::default()
            };
            sender.send(message).await.unwrap();
        }
        drop(sender);
        while let Some(reply) = incoming.message().await? {
            replies.push(reply);
        }
        Ok(replies)
    }

    /// The standard health check for `service` ("" = the server as a whole).
    pub async fn health(&self, service: &str) -> Result<i32, Status> {
        let mut client = tonic_health::pb::health_client::HealthClient::new(self.channel.clone());
        let request = self.request(tonic_health::pb::HealthCheckRequest {
            service: service.to_string(),
        });
        Ok(client.check(request).await?.into_inner().status)
    }

    /// The services server reflection lists.
    pub async fn list_services(&self) -> Result<Vec<String>, Status> {
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        let mut client = ServerReflectionClient::new(self.channel.clone());
        let ask = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let request = self.request(tokio_stream::iter([ask]));
        let mut answers = client.server_reflection_info(request).await?.into_inner();
        let mut names = Vec::new();
        while let Some(answer) = answers.message().await? {
            if let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response {
                names.extend(list.service.into_iter().map(|s| s.name));
            }
        }
        Ok(names)
    }
}
