//! The client protocol: frames that look like commands but are not.

use switchboard_tests::{RawWs, client, gateway_config, start_dev};
use switchboard_wire::Encoding;

#[tokio::test]
async fn commands_must_be_json_objects() {
    let node = start_dev(gateway_config()).await;
    let neighbour = client(node.http, Encoding::Json).await;
    // Replies: an object with an id whose command member is not an object.
    let mut ws = RawWs::connected(node.http).await;
    for (cmd, code) in [
        (r#"{"id":3,"subscribe":["ch"]}"#, 102),
        (r#"{"id":4,"publish":["ch",1]}"#, 102),
        (r#"{"id":5,"unsubscribe":"ch"}"#, 102),
        (r#"{"id":6,"rpc":[1]}"#, 102),
    ] {
        ws.text(cmd).await;
        let reply = ws.json().await;
        assert_eq!(reply["error"]["code"], code, "{cmd}: {reply}");
    }
    // Not commands at all: arrays (which serde would read as the command's fields).
    for frame in [r#"[2,null,{},{"channel":"x"}]"#, "[7]", " [1,{}]"] {
        let mut ws = RawWs::connected(node.http).await;
        ws.text(frame).await;
        ws.expect_close(4500).await;
    }
    neighbour.ping().await.expect("the neighbour is unaffected");
}
