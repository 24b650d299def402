//! `upstream = "builtin:echo"`: answers with JSON describing the request exactly as an upstream
//! would have received it (after identity stripping and header rewriting), so users can see
//! their identity and forwarding headers without running a backend.

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response};
use serde_json::{Map, Value};

use crate::{full_body, Body};

/// The echo response for a request as it would leave the gateway.
pub fn respond<B>(request: &Request<B>) -> Response<Body> {
    let mut headers = Map::new();
    for name in request.headers().keys() {
        let values: Vec<Value> = request
            .headers()
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let value = match <[Value; 1]>::try_from(values) {
            Ok([single]) => single,
            Err(many) => Value::Array(many),
        };
        headers.insert(name.as_str().to_string(), value);
    }
    let body = serde_json::json!({
        "method": request.method().as_str(),
        "path": request.uri().path(),
        "query": request.uri().query(),
        "headers": headers,
    });
    let mut response = Response::new(full_body(body.to_string()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn echoes_method_path_query_and_headers() {
        let request = Request::builder()
            .method("PUT")
            .uri("/a/b?x=1")
            .header("x-one", "1")
            .header("x-two", "a")
            .header("x-two", "b")
            .body(())
            .unwrap();
        let bytes = respond(&request)
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let json: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["method"], "PUT");
        assert_eq!(json["path"], "/a/b");
        assert_eq!(json["query"], "x=1");
        assert_eq!(json["headers"]["x-one"], "1");
        assert_eq!(json["headers"]["x-two"], serde_json::json!(["a", "b"]));
    }
}
